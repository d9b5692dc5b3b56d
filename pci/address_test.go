package pci

import (
	"encoding/json"
	"strings"
	"testing"
)

func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{"0000:00:03.0", "00:1f.2", "../../etc", "0000:00:03.0/../x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAddress(s)
		if err != nil {
			return
		}
		if str := a.String(); strings.ContainsAny(str, "/\x00") || len(str) != 12 {
			t.Fatalf("%q parsed to unsafe %q", s, str)
		}
	})
}

func TestParseAddress(t *testing.T) {
	good := map[string]string{
		"0000:00:03.0": "0000:00:03.0",
		"00:1f.2":      "0000:00:1f.2",
		"ABCD:ff:1F.7": "abcd:ff:1f.7",
	}
	for in, want := range good {
		a, err := ParseAddress(in)
		if err != nil || a.String() != want {
			t.Errorf("ParseAddress(%q) = %v, %v; want %s", in, a, err, want)
		}
	}
	for _, in := range []string{"", "0000:00:03", "0000:00:20.0", "0000:00:03.8", "../../../etc/passwd", "0000:00:03.0/..",
		"0000:00:03.0\x00", "00000:00:03.0", "0:0:3.0", "0000:0g:03.0", "0000:00:03.0 ", "0000:00:03.00", "0000:00:03:0.0", strings.Repeat("a", 5000)} {
		if a, err := ParseAddress(in); err == nil {
			t.Errorf("ParseAddress(%q) = %v, want an error", in, a)
		}
	}
}

func TestDeviceJSONHex(t *testing.T) {
	d := &Device{Address: "0000:00:04.0", Vendor: 0x8086, Device: 0x10d3, SubVendor: 0x8086, SubDevice: 0, Class: 0x020000, IOMMUGroup: 2}
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"vendor": "8086", "device": "10d3", "subsystem_device": "0000", "class": "0200", "prog_if": "00", "address": "0000:00:04.0", "iommu_group": 2.0} {
		if got[k] != want {
			t.Errorf("%s = %#v, want %#v (in %s)", k, got[k], want, b)
		}
	}
}
