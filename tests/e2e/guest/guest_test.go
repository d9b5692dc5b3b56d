// Package guest holds the end-to-end tests that run as root inside the QEMU
// guest (hack/qemu), against real /dev/vfio and /dev/iommu. On the host they
// skip: `go test ./tests/e2e` boots the guests and runs them there.
package guest

import (
	"fmt"
	"os"
	"testing"

	"github.com/vfioctl/vfioctl/hack/qemu/frame"
	"github.com/vfioctl/vfioctl/pci"
	"github.com/vfioctl/vfioctl/vfio"
)

// Kernel and Profile name the boot this test binary runs in.
var (
	Kernel  = os.Getenv("VFIOCTL_KERNEL")
	Profile = os.Getenv("VFIOCTL_PROFILE")
	// EdusOnly: the boot's only devices are the two edus (the arm64 and
	// ppc64le machines), no NIC or nvme.
	EdusOnly = Profile == "smmuv3" || Profile == "pseries"
)

// bootGroups is each PCI device's IOMMU group as the guest booted, before
// any test bound a driver (-1: none yet).
var bootGroups = map[string]int{}

func TestMain(m *testing.M) {
	if os.Getenv(frame.GuestEnv) == "" {
		fmt.Println("guest tests run inside the e2e VM: go test ./tests/e2e")
		os.Exit(0)
	}
	if devs, err := pci.List(); err == nil {
		for _, d := range devs {
			bootGroups[d.Address] = d.IOMMUGroup
		}
	}
	os.Exit(m.Run())
}

// fdOf is the descriptor of an object that keeps owning it.
func fdOf(t testing.TB, f vfio.FDer) int {
	t.Helper()
	fd, err := f.FD()
	if err != nil {
		t.Fatal(err)
	}
	return fd
}
