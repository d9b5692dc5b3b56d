// Package e2e boots the guest kernels under every vIOMMU profile and runs
// the in-guest test packages there as root; each guest test is reported
// here as a subtest named kernel/profile/TestName. TestVM runs its boots
// side by side (VFIOCTL_E2E_PARALLEL sets how many at once).
//
//	go test ./tests/e2e                                  # everything
//	VFIOCTL_E2E_PARALLEL=1 go test ./tests/e2e           # one boot at a time
//	VFIOCTL_E2E_KERNELS=legacy VFIOCTL_E2E_PROFILES=intel go test ./tests/e2e
//	go test ./tests/e2e -args -test.run=... is not forwarded; use VFIOCTL_E2E_RUN
package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vfioctl/vfioctl/hack/qemu"
	"github.com/vfioctl/vfioctl/tests/e2e/internal/pattern"
)

// guestPackages run inside every boot.
var guestPackages = []string{"./tests/e2e/guest", "./vfio", "./nvme", "./deviceplugin/guest", "./dra/guest"}

// ArmTests are the guest tests of the arm64 boot: those that need only
// the edus, and the SMMUv3's own.
const ArmTests = "^(TestSmokeBindEdu|TestBackendsByKernel|TestEduDMARoundtrip|TestEduInterrupts|TestEduIsolation|TestEduInfo|" +
	"TestIOVARangesAndHWInfo|TestTwoDevicesOneAddressSpace|TestHandoffToUnprivilegedChild|TestMapUnmapAllocs|" +
	"TestCLIListMatchesSysfs|TestCLIEduSession|TestBindOwner|TestCDIGenerate|TestDevicePlugin.*|TestSMMUv3|TestMdev.*|TestMigration.*|TestDisplay.*|TestLowPower)$"

// PPCTests are the guest tests of the ppc64le pSeries boot: those that
// need only the edus, run in the SPAPR TCE modes, and SPAPR's own.
const PPCTests = "^(TestSmokeBindEdu|TestBackendsByKernel|TestEduDMARoundtrip|TestEduInterrupts|TestEduIsolation|TestEduInfo|" +
	"TestTwoDevicesOneAddressSpace|TestHandoffToUnprivilegedChild|TestMapUnmapAllocs|TestCLIListMatchesSysfs|" +
	"TestCLIEduSession|TestBindOwner|TestCDIGenerate|TestDevicePlugin.*|TestSPAPR|TestLowPower)$"

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func list(env string, def []string) []string {
	if v := os.Getenv(env); v != "" {
		return strings.Split(v, ",")
	}
	return def
}

// TestVM runs its boots side by side, as many at once as parallelBoots
// says: a guest spends much of its time waiting (on emulated devices, on
// its tests' timeouts), and two boots on a 2-core host each take about a
// tenth longer than alone. The kernels not yet cached are built meanwhile,
// one after the other, each boot starting once its own is ready.
func TestVM(t *testing.T) {
	var boots []boot
	var args []string
	if r := os.Getenv("VFIOCTL_E2E_RUN"); r != "" {
		args = append(args, "-test.run="+r)
	}
	kernels := list("VFIOCTL_E2E_KERNELS", append(qemu.KernelVariants, qemu.MockKernel, "arm64", "ppc64le"))
	for _, k := range kernels {
		if k == qemu.MockKernel || k == "arm64" || k == "ppc64le" {
			continue // below: it boots without a vIOMMU; arm64 has its own machine
		}
		for _, p := range list("VFIOCTL_E2E_PROFILES", qemu.ProfileNames) {
			boots = append(boots, boot{k + "/" + p, k, func(t *testing.T) {
				image := hostImage(t)
				res := qemu.Run(t, qemu.Spec{
					Kernel:   k,
					Profile:  p,
					Packages: guestPackages,
					TestArgs: args,
					Builds: map[string]string{"bin/vfioctl": "./cmd/vfioctl", "bin/vmm": "examples/vmm",
						"bin/vfioctl-device-plugin": "deviceplugin/cmd/vfioctl-device-plugin"},
					Timeout:   8 * time.Minute,
					NVMeImage: image,
				})
				checkImage(t, image, res, args)
			}})
		}
	}
	// No vIOMMU, VFIO's no-IOMMU mode on: every kernel variant (queued
	// after the other architectures': these are short). On the
	// iommufd test kernel the mock IOMMU's tests run here too: the mock
	// probes its devices only where no other IOMMU driver registered
	// first (Linux 6.12 hands a device without firmware description to the
	// first IOMMU registered, which under a vIOMMU is intel or amd).
	var noIOMMU []boot
	for _, k := range kernels {
		if k == "arm64" || k == "ppc64le" {
			continue
		}
		run := "^TestNoIOMMU$"
		env := []string{"VFIOCTL_EXPECT_NOIOMMU=1"}
		if k == qemu.MockKernel {
			// Mediated devices need no IOMMU: they run here too.
			run = "^(TestNoIOMMU|TestMock.*|TestMdev.*|TestMigration.*|TestDisplay.*)$"
		}
		noIOMMU = append(noIOMMU, boot{k + "/noiommu", k, func(t *testing.T) {
			qemu.Run(t, qemu.Spec{
				Kernel:   k,
				Profile:  "noiommu",
				Packages: []string{"./tests/e2e/guest"},
				TestArgs: []string{"-test.run=" + run},
				Builds:   map[string]string{"bin/vfioctl": "./cmd/vfioctl"},
				Env:      env,
				Timeout:  3 * time.Minute,
			})
		}})
	}
	// The other architectures (kernels cross-built, guest binaries built
	// for their GOARCH, TCG): arm64 virt with an SMMUv3, and ppc64le
	// pSeries with its SPAPR TCE IOMMU, each running the tests that need
	// only the edus (in the SPAPR modes there) and its IOMMU's own.
	for _, f := range []struct{ kernel, profile, tests string }{
		{"arm64", "smmuv3", ArmTests},
		{"ppc64le", "pseries", PPCTests},
	} {
		if !contains(kernels, f.kernel) {
			continue
		}
		boots = append(boots, boot{f.kernel + "/" + f.profile, f.kernel, func(t *testing.T) {
			run := "-test.run=" + f.tests
			if len(args) > 0 {
				run = args[0]
			}
			qemu.Run(t, qemu.Spec{
				Kernel:   f.kernel,
				Profile:  f.profile,
				Packages: []string{"./tests/e2e/guest", "./deviceplugin/guest"},
				TestArgs: []string{run},
				Builds: map[string]string{"bin/vfioctl": "./cmd/vfioctl",
					"bin/vfioctl-device-plugin": "deviceplugin/cmd/vfioctl-device-plugin"},
				Timeout: 8 * time.Minute,
			})
		}})
	}
	// virtio-iommu without the allow_unsafe_interrupts parameters: every
	// mode must be refused, saying why.
	boots = append(boots, noIOMMU...)
	boots = append(boots, boot{"legacy/virtio-no-unsafe-interrupts", "legacy", func(t *testing.T) {
		qemu.Run(t, qemu.Spec{
			Kernel:             "legacy",
			Profile:            "virtio",
			OmitProfileCmdline: true,
			Packages:           []string{"./tests/e2e/guest"},
			TestArgs:           []string{"-test.run=^TestUnsafeInterruptsRefused$"},
			Env:                []string{"VFIOCTL_EXPECT_NO_UNSAFE=1"},
			Timeout:            3 * time.Minute,
		})
	}})
	runBoots(t, boots, parallelBoots(t), buildKernels(boots, builtKernel))
}

// TestVMBenchmarks runs the guest benchmarks (legacy kernel, intel-iommu)
// and logs their results; `make bench` shows them. The guest's binary is
// built without checkptr, as users build the library: checkptr would
// instrument the API's calls (the project's packages) and not the raw
// ioctls they are compared with (x/sys). TestVM's boots run the same map
// and unmap paths with it.
func TestVMBenchmarks(t *testing.T) {
	benchtime := os.Getenv("VFIOCTL_BENCHTIME")
	if benchtime == "" {
		benchtime = "200ms"
	}
	// Rounds: each runs every benchmark once, so a mode's api and raw
	// runs of one round are side by side (make bench: 5).
	count := os.Getenv("VFIOCTL_BENCHCOUNT")
	if count == "" {
		count = "1"
	}
	res := qemu.Run(t, qemu.Spec{
		Kernel:     "legacy",
		Profile:    "intel",
		Packages:   []string{"./tests/e2e/guest"},
		TestArgs:   []string{"-test.run=^$", "-test.bench=.", "-test.benchmem", "-test.benchtime=" + benchtime, "-test.count=" + count},
		Timeout:    8 * time.Minute,
		NoCheckptr: true,
	})
	for _, c := range res.Commands {
		for _, l := range strings.Split(c.Output, "\n") {
			if strings.HasPrefix(l, "Benchmark") {
				t.Log(l)
			}
		}
		if !strings.Contains(c.Output, "BenchmarkMap256M/one-call") {
			t.Errorf("the benchmarks did not all run:\n%s", c.Output)
		}
		rows := parseBenchLines(c.Output)
		table, err := apiVersusRaw(rows)
		if err != nil {
			t.Fatalf("the map+unmap benchmarks: %v", err)
		}
		t.Logf("%s rounds of %s each:\n%s", count, benchtime, strings.Join(table, "\n"))
		for _, r := range rows {
			if maxOf(r.allocs) > 0 {
				t.Errorf("%s allocates: %v allocs/op over its rounds", r.name, r.allocs)
			}
		}
	}
}

// hostImage writes the nvme's backing file, every block in the host's
// pattern (tests/e2e/internal/pattern).
func hostImage(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "nvme.img")
	b := make([]byte, pattern.ImageSize)
	pattern.Host(b, 0)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkImage checks the image after the boot: the slot of every guest
// subtest that passed holds that subtest's data (pattern.Slots: each
// mode, completion, queue and transfer size writes its own); every other
// block outside the scratch area still holds the host's. An unfiltered
// run must have written some.
func checkImage(t *testing.T, path string, res *qemu.Result, args []string) {
	t.Helper()
	if res == nil || !res.Done {
		return // the boot failed, and says so
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != pattern.ImageSize {
		t.Fatalf("the nvme image is %d bytes after the boot, want %d", len(b), pattern.ImageSize)
	}
	out := ""
	for _, c := range res.Commands {
		out += c.Output
	}
	written := 0
	end := uint64(pattern.SlotStart)
	for _, s := range pattern.Slots {
		region := b[s.First*pattern.BlockSize : (s.First+s.Blocks)*pattern.BlockSize]
		want, who := pattern.Host, "the host's (its subtest did not pass)"
		if strings.Contains(out, "--- PASS: "+s.Test+" ") {
			written++
			want, who = s.Guest, "what "+s.Test+" wrote there"
		}
		if bad := pattern.Mismatch(region, s.First, want); bad >= 0 {
			t.Errorf("image after the boot: block %d of %s's slot %q is not %s: % x", bad, s.Test, s.Part, who, b[bad*pattern.BlockSize:bad*pattern.BlockSize+32])
		}
		end = s.First + s.Blocks
	}
	for _, r := range [][2]uint64{{0, pattern.SlotStart}, {end, pattern.ScratchStart}} {
		if bad := pattern.Mismatch(b[r[0]*pattern.BlockSize:r[1]*pattern.BlockSize], r[0], pattern.Host); bad >= 0 {
			t.Errorf("image after the boot: block %d, which no test writes, is not the host's: % x", bad, b[bad*pattern.BlockSize:bad*pattern.BlockSize+32])
		}
	}
	if written == 0 && len(args) == 0 {
		t.Errorf("no guest subtest that writes the nvme passed, so the image check proves nothing")
	}
	t.Logf("nvme image: %d of %d slots hold their subtest's data, the rest of the %d MiB untouched", written, len(pattern.Slots), pattern.ImageSize>>20)
}
