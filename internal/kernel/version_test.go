package kernel

import "testing"

func TestParseRelease(t *testing.T) {
	for s, want := range map[string][3]int{
		"6.12.118-amd64": {6, 12, 118}, "6.1": {6, 1, 0}, "6.7.0-rc1+": {6, 7, 0}, "5.15.0-91-generic": {5, 15, 0}, "": {},
	} {
		if got := parseRelease(s); got != want {
			t.Errorf("parseRelease(%q) = %v, want %v", s, got, want)
		}
	}
	r := release()
	if r[0] < 3 {
		t.Fatalf("the running kernel reads as %v", r)
	}
	if Before("1.0") || !Before("999.0") {
		t.Errorf("Before misorders %v against 1.0 and 999.0", r)
	}
}
