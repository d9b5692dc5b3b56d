package uapi

import (
	"reflect"
	"testing"

	"github.com/vfioctl/vfioctl/internal/cabi"
)

// TestABI compiles C programs against the kernel's uapi headers and checks
// every struct (sizeof, every field's offset and size), every ioctl number and
// every constant against the Go declarations. It never skips: without headers
// it fails and says how to get them.
func TestABI(t *testing.T) {
	inc, abi := loadABI(t)
	layout, err := cabi.Offsets(inc, abi)
	if err != nil {
		t.Fatal(err)
	}

	nfields, nioctls := 0, 0
	cStructs := map[string]bool{}
	for _, s := range abi.Structs {
		cStructs[s.Name] = true
		gt, ok := goStructs[s.Name]
		if !ok {
			t.Errorf("struct %s: no Go type", s.Name)
			continue
		}
		if got, want := int64(gt.Size()), layout.Size[s.Name]; got != want || s.Size != want {
			t.Errorf("struct %s: sizeof C=%d DWARF=%d, Go %s=%d", s.Name, want, s.Size, gt.Name(), got)
		}
		names := cabi.GoFieldNames(s)
		for i, f := range s.Fields {
			nfields++
			off := layout.Offsets[s.Name][f.Name]
			if off != f.Offset {
				t.Errorf("%s.%s: offsetof C=%d, DWARF=%d", s.Name, f.Name, off, f.Offset)
			}
			gf, ok := gt.FieldByName(names[i])
			if f.Flexible {
				if ok {
					t.Errorf("%s.%s: flexible array has a Go field", s.Name, f.Name)
				}
				if off > int64(gt.Size()) {
					t.Errorf("%s.%s: flexible array at %d lies past Go size %d", s.Name, f.Name, off, gt.Size())
				}
				continue
			}
			if !ok {
				t.Errorf("%s.%s: no Go field %s.%s", s.Name, f.Name, gt.Name(), names[i])
				continue
			}
			if int64(gf.Offset) != off || int64(gf.Type.Size()) != f.Size {
				t.Errorf("%s.%s: C offset %d size %d, Go %s.%s offset %d size %d",
					s.Name, f.Name, off, f.Size, gt.Name(), gf.Name, gf.Offset, gf.Type.Size())
			}
		}
	}
	for name := range goStructs {
		if !cStructs[name] {
			t.Errorf("Go declares struct %s, which the headers do not", name)
		}
	}

	cConsts := map[string]bool{}
	for _, c := range abi.Consts {
		cConsts[c.Name] = true
		if c.Ioctl {
			nioctls++
		}
		switch c.Kind {
		case "uint":
			if v, ok := goUints[c.Name]; !ok || v != c.Uint {
				t.Errorf("%s: C %#x, Go %#x (declared %v)", c.Name, c.Uint, v, ok)
			}
		case "int":
			if v, ok := goInts[c.Name]; !ok || v != c.Int {
				t.Errorf("%s: C %d, Go %d (declared %v)", c.Name, c.Int, v, ok)
			}
		case "string":
			if v, ok := goStrings[c.Name]; !ok || v != c.String {
				t.Errorf("%s: C %q, Go %q (declared %v)", c.Name, c.String, v, ok)
			}
		}
	}
	for _, m := range []any{goUints, goInts, goStrings} {
		for _, k := range reflect.ValueOf(m).MapKeys() {
			if !cConsts[k.String()] {
				t.Errorf("Go declares constant %s, which the headers do not", k)
			}
		}
	}
	t.Logf("checked against %s: %d structs, %d fields, %d ioctls, %d constants",
		inc, len(abi.Structs), nfields, nioctls, len(abi.Consts)-nioctls)
}

// loadABI reads the 6.12 headers' ABI as the C compiler sees it; without
// headers it fails and says how to get them.
func loadABI(t *testing.T) (string, *cabi.ABI) {
	t.Helper()
	inc, err := cabi.HeaderDir("..")
	if err != nil {
		t.Fatalf("kernel headers: %v", err)
	}
	abi, err := cabi.Load(inc)
	if err != nil {
		t.Fatal(err)
	}
	return inc, abi
}
