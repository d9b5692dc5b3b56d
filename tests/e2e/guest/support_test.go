package guest

import (
	"errors"
	"strings"
	"testing"

	"github.com/vfioctl/vfioctl/vfio"
)

// sinceLinux is the Linux version that added each backend's kernel side.
var sinceLinux = map[vfio.Backend]string{vfio.IOMMUFDCompat: "6.2", vfio.GroupIOMMUFD: "6.2", vfio.Cdev: "6.6"}

// probed caches, per backend, what opening edu through it gave.
var probed = map[vfio.Backend]error{}

// backendSupported reports whether the running kernel offers backend b,
// found by behaviour (opening edu through it), not by version: on a kernel
// without it, vfio.Open must answer ErrNotSupported naming the Linux
// version that added it, and any other failure fails the test.
func backendSupported(t testing.TB, b vfio.Backend) bool {
	t.Helper()
	err, done := probed[b]
	if !done {
		h, e := vfio.Open(eduAddr(t), &vfio.Options{Backend: b})
		if e == nil {
			h.Close()
		}
		err, probed[b] = e, e
	}
	if err == nil {
		return true
	}
	v, why := sinceLinux[b], unsupportedSays(b)
	if v == "" || !errors.Is(err, vfio.ErrNotSupported) || !strings.Contains(err.Error(), why) {
		t.Fatalf("opening edu via %s: %v (want success, or ErrNotSupported saying %q)", b, err, why)
	}
	return false
}

// unsupportedSays is what the error for a backend the kernel lacks must
// say: the Linux that added it, or on POWER, where no Linux has it, why.
func unsupportedSays(b vfio.Backend) string {
	if Profile == "pseries" {
		return "SPAPR TCE IOMMU allocates no iommufd paging domain"
	}
	return "Linux " + sinceLinux[b]
}

// requireBackend skips the test on a kernel without backend b, once
// backendSupported has checked that the library says so as promised.
func requireBackend(t testing.TB, b vfio.Backend) {
	t.Helper()
	if !backendSupported(t, b) {
		t.Skipf("%s: this kernel or platform lacks it, and vfio.Open says so: %v", b, probed[b])
	}
}

// supportedModes are the modes of the running kernel.
func supportedModes(t testing.TB) []mode {
	var out []mode
	for _, m := range modes {
		if backendSupported(t, m.backend) {
			out = append(out, m)
		}
	}
	return out
}

// TestBackendsByKernel: every backend either works or, on a kernel without
// it, says which Linux added it; the legacy container always works.
func TestBackendsByKernel(t *testing.T) {
	if !backendSupported(t, vfio.Legacy) {
		t.Fatal("the legacy container is not available")
	}
	for _, b := range []vfio.Backend{vfio.IOMMUFDCompat, vfio.GroupIOMMUFD, vfio.Cdev} {
		t.Logf("%s: supported=%v (%v)", b, backendSupported(t, b), probed[b])
	}
	h, err := vfio.Open(eduAddr(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	want := vfio.Legacy
	switch {
	case backendSupported(t, vfio.Cdev):
		want = vfio.Cdev
	case backendSupported(t, vfio.GroupIOMMUFD):
		want = vfio.GroupIOMMUFD
	}
	if h.Backend != want {
		t.Errorf("the default backend is %s, want %s on this kernel", h.Backend, want)
	}
}
