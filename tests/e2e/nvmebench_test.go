package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vfioctl/vfioctl/hack/qemu"
)

// TestVMNVMeBench compares the userspace NVMe driver with the kernel's on
// the same emulated nvme (kernel variant bench: 6.12 with io_uring;
// intel-iommu; a 256 MiB image; two poll queues for the kernel's hipri
// rows), every row in one boot: `make bench` runs it and prints the table
// the README's BENCHMARKS section holds. A second boot with
// iommu.passthrough=1 measures the kernel's rows without DMA translation
// (userspace DMA through VFIO is always translated). VFIOCTL_NVME_BENCH
// is the length of each run (make bench: 5s); unset, the test is skipped,
// as it takes minutes and measures rather than checks (though every read
// is checked against the image).
func TestVMNVMeBench(t *testing.T) {
	per := os.Getenv("VFIOCTL_NVME_BENCH")
	if per == "" {
		t.Skip("make bench runs it (VFIOCTL_NVME_BENCH=5s)")
	}
	d, err := time.ParseDuration(per)
	if err != nil {
		t.Fatal(err)
	}
	fio, err := exec.LookPath("fio")
	if err != nil {
		t.Fatalf("fio: %v (make bench installs Debian's fio)", err)
	}
	files, err := qemu.HostProgram(fio)
	if err != nil {
		t.Fatal(err)
	}
	image := filepath.Join(t.TempDir(), "nvme.img")
	b := make([]byte, 256<<20)
	for i := range b {
		b[i] = byte(i*131 + i>>12) // the guest's checkPattern knows it
	}
	if err := os.WriteFile(image, b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, boot := range []struct{ name, cmdline, rows string }{
		{"translated (intel-iommu), every row", "nvme.poll_queues=2", ""},
		{"iommu.passthrough=1, the kernel's rows", "nvme.poll_queues=2 iommu.passthrough=1", "kernel:"},
	} {
		res := qemu.Run(t, qemu.Spec{
			Kernel:    "bench",
			Profile:   "intel",
			Packages:  []string{"./tests/e2e/guest"},
			TestArgs:  []string{"-test.run=^TestNVMeVersusKernel$", "-test.v"},
			Env:       []string{"VFIOCTL_NVME_BENCH=" + per, "VFIOCTL_NVME_BENCH_ROWS=" + boot.rows},
			Files:     files,
			Cmdline:   boot.cmdline,
			NVMeImage: image,
			// The driver as users build it, not checkptr's instrumented twin.
			NoCheckptr: true,
			Timeout:    10*time.Minute + 20*3*(d+2*time.Second),
		})
		table := false
		for _, c := range res.Commands {
			if i := strings.Index(c.Output, "NVMETABLE"); i >= 0 {
				t.Logf("%s (kernel %s, %s):", boot.name, res.Kernel, boot.cmdline)
				for _, l := range strings.Split(c.Output[i+len("NVMETABLE"):], "\n") {
					if l = strings.TrimSpace(l); strings.HasPrefix(l, "|") {
						t.Log(l)
					}
				}
				table = true
			}
		}
		if !table {
			t.Errorf("%s: the guest printed no table", boot.name)
		}
	}
}
