package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vfioctl/vfioctl/hack/qemu"
)

// TestVMPersist boots the guest twice on one nvme disk that holds its
// /etc: the first boot saves bindings with `vfioctl bind --persist`
// (TestPersistSave), the second, fresh, applies them as the installed
// systemd unit and udev rule do (TestPersistApply).
func TestVMPersist(t *testing.T) {
	disk := filepath.Join(t.TempDir(), "state.img")
	if err := os.WriteFile(disk, make([]byte, 64<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, phase := range []string{"save", "apply"} {
		test := "TestPersist" + strings.ToUpper(phase[:1]) + phase[1:]
		ok := t.Run(phase, func(t *testing.T) {
			res := qemu.Run(t, qemu.Spec{
				Kernel:    "legacy",
				Profile:   "intel",
				Packages:  []string{"./tests/e2e/guest"},
				TestArgs:  []string{"-test.run=^" + test + "$"},
				Builds:    map[string]string{"bin/vfioctl": "./cmd/vfioctl"},
				Env:       []string{"VFIOCTL_PERSIST_PHASE=" + phase},
				Timeout:   3 * time.Minute,
				NVMeImage: disk,
			})
			out := ""
			for _, c := range res.Commands {
				out += c.Output
			}
			if !strings.Contains(out, "--- PASS: "+test+" ") {
				t.Errorf("%s did not pass in the guest", test)
			}
		})
		if !ok {
			t.Fatalf("the %s boot failed: the next boot would prove nothing", phase)
		}
	}
}
