package uapi

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestIoctlNumbersPPC64LE compiles the kernel's own request numbers with
// the powerpc64le cross compiler, against its <asm/ioctl.h> (where _IO's
// direction field says _IOC_NONE = 1 at bit 29), reads them from the
// object file, and checks that each is this package's number for the
// generic encoding with iocNoneDir29 added: what IOCNone is on ppc64le.
// TestABI checks the generic numbers themselves against the host's C.
func TestIoctlNumbersPPC64LE(t *testing.T) {
	cc, err := exec.LookPath("powerpc64le-linux-gnu-gcc")
	if err != nil {
		t.Fatal("no powerpc64le-linux-gnu-gcc: apt-get install gcc-powerpc64le-linux-gnu (make deps does)")
	}
	inc, abi := loadABI(t)
	// Only the VFIO and iommufd headers of the 6.12 tree: everything they
	// include (linux/types.h, linux/ioctl.h, asm/...) comes from the cross
	// compiler's powerpc sysroot.
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "linux"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"vfio.h", "iommufd.h"} {
		b, err := os.ReadFile(filepath.Join(inc, "linux", h))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "linux", h), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	var src bytes.Buffer
	src.WriteString("#include <linux/vfio.h>\n#include <linux/iommufd.h>\nconst unsigned long long vfioctl_ioctls[] = {\n")
	for _, c := range abi.Consts {
		if c.Ioctl {
			names = append(names, c.Name)
			fmt.Fprintf(&src, "\t%s,\n", c.Name)
		}
	}
	src.WriteString("};\n")
	if err := os.WriteFile(filepath.Join(dir, "n.c"), src.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	obj := filepath.Join(dir, "n.o")
	if out, err := exec.Command(cc, "-I", dir, "-c", "-o", obj, filepath.Join(dir, "n.c")).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cc, err, out)
	}
	f, err := elf.Open(obj)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Machine != elf.EM_PPC64 || f.ByteOrder != binary.LittleEndian {
		t.Fatalf("%s made a %v %v object", cc, f.Machine, f.ByteOrder)
	}
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	var vals []uint64
	for _, s := range syms {
		if s.Name != "vfioctl_ioctls" {
			continue
		}
		data, err := f.Sections[s.Section].Data()
		if err != nil {
			t.Fatal(err)
		}
		b := data[s.Value : s.Value+s.Size]
		for i := 0; i+8 <= len(b); i += 8 {
			vals = append(vals, binary.LittleEndian.Uint64(b[i:]))
		}
	}
	if len(vals) != len(names) || len(names) == 0 {
		t.Fatalf("read %d numbers for %d ioctls", len(vals), len(names))
	}
	for i, n := range names {
		generic, ok := goUints[n]
		if !ok {
			t.Errorf("%s: not declared in Go", n)
			continue
		}
		if want := generic | iocNoneDir29; vals[i] != want {
			t.Errorf("%s on ppc64le: C %#x, Go %#x", n, vals[i], want)
		}
	}
	t.Logf("%d ioctl numbers checked for ppc64le (e.g. VFIO_GET_API_VERSION = %#x)", len(names), vals[0])
}
