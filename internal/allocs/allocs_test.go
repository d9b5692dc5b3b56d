package allocs

import (
	"strings"
	"testing"
)

var sink []byte

// TestCountIsExact: one allocation in ten calls is counted as one, where
// testing.AllocsPerRun reports 0.
func TestCountIsExact(t *testing.T) {
	i := 0
	oneInTen := func() {
		if i++; i%10 == 0 {
			sink = make([]byte, 64)
		}
	}
	if got := Count(200, oneInTen); got != 20 {
		t.Errorf("one allocation every 10 calls, 200 calls: counted %d, want 20", got)
	}
	if per := testing.AllocsPerRun(200, oneInTen); per != 0 {
		t.Logf("testing.AllocsPerRun now reports %v (it rounded to 0 when this test was written)", per)
	}
	if got := Count(200, func() {}); got != 0 {
		t.Errorf("a function that allocates nothing: counted %d", got)
	}
}

// TestWhereNamesTheSite: the sampled stacks name the line that allocated.
func TestWhereNamesTheSite(t *testing.T) {
	i := 0
	sites := Where(100, func() {
		if i++; i%10 == 0 {
			sink = make([]byte, 64) // the allocation Where must find
		}
	})
	for _, s := range sites {
		if strings.HasPrefix(s, "10: ") && strings.Contains(s, "TestWhereNamesTheSite") {
			return
		}
	}
	t.Errorf("sites: %q; want 10 allocations in TestWhereNamesTheSite", sites)
}
