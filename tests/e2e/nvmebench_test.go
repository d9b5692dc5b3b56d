package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vfioctl/vfioctl/hack/qemu"
)

// TestVMNVMeBench compares the userspace NVMe driver with the kernel's on
// the same emulated nvme in one boot (kernel variant bench: 6.12 with
// io_uring; intel-iommu; a 256 MiB image): `make bench` runs it and prints
// the table the README's BENCHMARKS section holds. VFIOCTL_NVME_BENCH is
// the length of each run (make bench: 5s); unset, the test is skipped, as
// it takes minutes and measures rather than checks.
func TestVMNVMeBench(t *testing.T) {
	per := os.Getenv("VFIOCTL_NVME_BENCH")
	if per == "" {
		t.Skip("make bench runs it (VFIOCTL_NVME_BENCH=5s)")
	}
	d, err := time.ParseDuration(per)
	if err != nil {
		t.Fatal(err)
	}
	image := filepath.Join(t.TempDir(), "nvme.img")
	b := make([]byte, 256<<20)
	for i := range b {
		b[i] = byte(i*131 + i>>12)
	}
	if err := os.WriteFile(image, b, 0o644); err != nil {
		t.Fatal(err)
	}
	res := qemu.Run(t, qemu.Spec{
		Kernel:    "bench",
		Profile:   "intel",
		Packages:  []string{"./tests/e2e/guest"},
		TestArgs:  []string{"-test.run=^TestNVMeVersusKernel$", "-test.v"},
		Env:       []string{"VFIOCTL_NVME_BENCH=" + per},
		NVMeImage: image,
		Timeout:   10*time.Minute + 30*3*d,
	})
	for _, c := range res.Commands {
		if i := strings.Index(c.Output, "NVMETABLE"); i >= 0 {
			for _, l := range strings.Split(c.Output[i+len("NVMETABLE"):], "\n") {
				if l = strings.TrimSpace(l); strings.HasPrefix(l, "|") {
					t.Log(l)
				}
			}
			return
		}
	}
	t.Errorf("the guest printed no table")
}
