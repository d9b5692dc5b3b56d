package guest

import (
	"fmt"
	"testing"

	"golang.org/x/sys/unix"
)

// linuxVersion is the running kernel's version (uname -r) as
// major*1e6 + minor*1e3 + patch, for answers that stable releases changed.
func linuxVersion(t testing.TB) int {
	t.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	r := unix.ByteSliceToString(u.Release[:])
	var major, minor, patch int
	if n, _ := fmt.Sscanf(r, "%d.%d.%d", &major, &minor, &patch); n < 2 {
		t.Fatalf("kernel release %q: not MAJOR.MINOR[.PATCH]", r)
	}
	return major*1e6 + minor*1e3 + patch
}

// linux builds a version in linuxVersion's form.
func linux(major, minor, patch int) int { return major*1e6 + minor*1e3 + patch }
