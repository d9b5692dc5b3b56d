package guest

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/vfioctl/vfioctl/hack/qemu"
	"github.com/vfioctl/vfioctl/vfio"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// sinceLinux is the Linux version that added each backend's kernel side.
var sinceLinux = map[vfio.Backend]string{vfio.IOMMUFDCompat: "6.2", vfio.GroupIOMMUFD: "6.2", vfio.Cdev: "6.6"}

// probed caches, per backend, what opening edu through it gave.
var probed = map[vfio.Backend]error{}

// offered reports whether the boot's manifest (hack/qemu's Offers, from the
// kernel's configuration and the machine, never from a probe) lists b.
func offered(t testing.TB, b vfio.Backend) bool {
	t.Helper()
	m, ok := os.LookupEnv(qemu.OfferEnv)
	if !ok {
		t.Fatalf("%s is not set: the boot has no manifest of the backends it must offer", qemu.OfferEnv)
	}
	return slices.Contains(strings.Split(m, ","), b.String())
}

// backendSupported reports whether the boot offers backend b, and checks
// that the library agrees with the boot's manifest: a backend the manifest
// lists must open edu (any failure, ErrNotSupported too, fails the test
// rather than turning it into a skip); one it leaves out must be refused
// with ErrNotSupported naming the Linux version that added it.
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
	if offered(t, b) {
		if err != nil {
			t.Fatalf("the boot's kernel and machine offer %s (%s=%s), but opening edu through it failed: %v", b, qemu.OfferEnv, os.Getenv(qemu.OfferEnv), err)
		}
		return true
	}
	v, why := sinceLinux[b], unsupportedSays(b)
	switch {
	case err == nil:
		t.Fatalf("edu opened through %s, which this boot's manifest says its kernel or machine lacks (%s=%s)", b, qemu.OfferEnv, os.Getenv(qemu.OfferEnv))
	case v == "" || !errors.Is(err, vfioerr.ErrNotSupported) || !strings.Contains(err.Error(), why):
		t.Fatalf("opening edu via %s, which this boot lacks: %v (want ErrNotSupported saying %q)", b, err, why)
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

// TestBackendsByKernel: the backends that open edu are exactly those the
// boot's manifest lists (each missing one saying which Linux added it), the
// legacy container is among them, and Open's default is the best of them.
func TestBackendsByKernel(t *testing.T) {
	var got []string
	for _, b := range []vfio.Backend{vfio.Legacy, vfio.IOMMUFDCompat, vfio.GroupIOMMUFD, vfio.Cdev} {
		if backendSupported(t, b) {
			got = append(got, b.String())
		}
		t.Logf("%s: supported=%v (%v)", b, offered(t, b), probed[b])
	}
	if want := os.Getenv(qemu.OfferEnv); strings.Join(got, ",") != want {
		t.Errorf("backends that open edu: %v; the manifest: %s", got, want)
	}
	if !offered(t, vfio.Legacy) {
		t.Fatal("the legacy container is not in the manifest: every boot of the suite offers it")
	}
	h, err := vfio.Open(eduAddr(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	want := vfio.Legacy
	switch {
	case offered(t, vfio.Cdev):
		want = vfio.Cdev
	case offered(t, vfio.GroupIOMMUFD):
		want = vfio.GroupIOMMUFD
	}
	if h.Backend() != want {
		t.Errorf("the default backend is %s, want %s on this kernel", h.Backend(), want)
	}
}
