package qemu

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestGuestTestsCheckptr: the guest's test binaries check the project's
// unsafe.Pointer conversions (one reaching past its allocation dies of
// checkptr), and without checkptr (NoCheckptr, the benchmarks) the same
// test passes.
func TestGuestTestsCheckptr(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		noCheckptr bool
		dies       bool // exits non-zero
		want       string
	}{{false, true, "checkptr: converted pointer straddles multiple allocations"}, {true, false, "PASS"}} {
		bin := filepath.Join(t.TempDir(), "checkptr.test")
		if err := goBuild(root, runtime.GOARCH, testBuildArgs(c.noCheckptr, bin, "./hack/qemu/testdata/checkptr")...); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "-test.v").CombinedOutput()
		if !strings.Contains(string(out), c.want) || (err != nil) != c.dies {
			t.Errorf("NoCheckptr %v: the conversion past its allocation gave (%v):\n%s\nwant %q", c.noCheckptr, err, out, c.want)
		}
	}
}
