// Package guest holds the end-to-end tests that run as root inside the QEMU
// guest (hack/qemu), against real /dev/vfio and /dev/iommu. On the host they
// skip: `go test ./tests/e2e` boots the guests and runs them there.
package guest

import (
	"fmt"
	"os"
	"testing"

	"github.com/vfioctl/vfioctl/hack/qemu/frame"
)

// Kernel and Profile name the boot this test binary runs in.
var (
	Kernel  = os.Getenv("VFIOCTL_KERNEL")
	Profile = os.Getenv("VFIOCTL_PROFILE")
)

func TestMain(m *testing.M) {
	if os.Getenv(frame.GuestEnv) == "" {
		fmt.Println("guest tests run inside the e2e VM: go test ./tests/e2e")
		os.Exit(0)
	}
	os.Exit(m.Run())
}
