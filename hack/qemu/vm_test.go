package qemu

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vfioctl/vfioctl/hack/qemu/frame"
)

// TestBrokenGuests breaks the guest on purpose and checks that each failure
// is reported, with the console log kept, in bounded time.
func TestBrokenGuests(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs")
	}
	// Boot is called through boot, which notes each boot's console log:
	// the boots of one kernel and profile below run at once, and each
	// must keep a log of its own (through one shared file, "kernel never
	// reaches init" could read another boot's kernel log).
	var mu sync.Mutex
	var logs []string
	boot := func(spec Spec) (*Result, error) {
		res, err := Boot(context.Background(), spec)
		if err == nil {
			mu.Lock()
			logs = append(logs, res.ConsoleLog)
			mu.Unlock()
		}
		return res, err
	}
	t.Cleanup(func() {
		seen := map[string]bool{}
		for _, l := range logs {
			if name := filepath.Base(l); seen[l] || !strings.HasPrefix(name, "legacy-intel-") || !strings.HasSuffix(name, ".console.log") {
				t.Errorf("console logs %q: want each boot's own, named legacy-intel-N.console.log", logs)
				break
			}
			seen[l] = true
			os.Remove(l) // the broken guests' logs were read above
		}
	})
	t.Run("test panics", func(t *testing.T) {
		t.Parallel() // mostly waiting on a guest; after "guest makes no progress", which sets a global
		res, err := boot(Spec{Kernel: "legacy", Profile: "intel", Packages: []string{"./hack/qemu/testdata/panics"}})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Done || len(res.Commands) != 1 || res.Commands[0].ExitCode == 0 {
			t.Fatalf("panicking test binary: done=%v commands=%+v", res.Done, res.Commands)
		}
		tests := GoTests(res.Commands[0].Output)
		if len(tests) != 2 || tests[0].Result != "PASS" || tests[1].Result == "PASS" || !strings.Contains(tests[1].Output, "on purpose") {
			t.Fatalf("tests = %+v", tests)
		}
	})
	t.Run("kernel never reaches init", func(t *testing.T) {
		t.Parallel() // mostly waiting on a guest; after "guest makes no progress", which sets a global
		start := time.Now()
		res, err := boot(Spec{Kernel: "legacy", Profile: "intel", Cmdline: "rdinit=/nonexistent", Timeout: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if res.Err == nil || res.Done {
			t.Fatalf("a kernel with no init was reported as fine: %+v", res)
		}
		b, _ := os.ReadFile(res.ConsoleLog)
		if !strings.Contains(string(b), "Kernel panic") {
			t.Errorf("console log %s lacks the panic:\n%s", res.ConsoleLog, b)
		}
		if time.Since(start) > 50*time.Second {
			t.Errorf("took %s; panic=-1 should end the VM at once", time.Since(start))
		}
	})
	t.Run("test hangs", func(t *testing.T) {
		t.Parallel() // mostly waiting on a guest; after "guest makes no progress", which sets a global
		// The guest's -test.timeout (80% of the VM's, both counted after
		// the guest has booted, however slowly) ends a hung test with its
		// goroutine dump, before the VM is killed.
		start := time.Now()
		res, err := boot(Spec{Kernel: "legacy", Profile: "intel", Packages: []string{"./hack/qemu/testdata/hangs"}, Timeout: 20 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Commands) != 1 || res.Commands[0].ExitCode == 0 || !strings.Contains(res.Commands[0].Output, "test timed out") {
			t.Fatalf("hung test: err=%v commands=%+v", res.Err, res.Commands)
		}
		if d := time.Since(start); d > 20*time.Second+NoProgressTimeout {
			t.Errorf("hung test took %s with a 20 s budget (and %s to boot)", d, NoProgressTimeout)
		}
	})
	t.Run("guest hangs", func(t *testing.T) {
		t.Parallel() // mostly waiting on a guest; after "guest makes no progress", which sets a global
		// Init starts a command with no limit of its own that never ends:
		// only the VM timeout, counted from init's first word, ends this
		// boot, and init's first word names the kernel.
		start := time.Now()
		res, err := boot(Spec{Kernel: "legacy", Profile: "intel", Timeout: 15 * time.Second,
			Commands: []frame.Command{{Name: "hang", Argv: []string{"/bin/sleep", "3600"}}}})
		if err != nil {
			t.Fatal(err)
		}
		if res.Err == nil || !strings.Contains(res.Err.Error(), "timeout (counted from its init's start)") {
			t.Fatalf("hung guest: err = %v", res.Err)
		}
		if !strings.HasPrefix(res.Kernel, "6.12.") {
			t.Errorf("init reported kernel %q, want the 6.12 release the legacy variant is built from", res.Kernel)
		}
		if d := time.Since(start); d > 15*time.Second+NoProgressTimeout {
			t.Errorf("hung guest took %s to be killed with a 15 s timeout", d)
		}
	})
	t.Run("QEMU dies of a fault", func(t *testing.T) {
		t.Parallel() // mostly waiting on a guest; after "guest makes no progress", which sets a global
		// QEMU 7.2 has died of SIGSEGV under amd-iommu in CI: such a boot
		// is a machine failure, which Run boots again (machineFailed).
		// Here the host sends the fault to this boot's QEMU, found by a
		// name of its own on its command line.
		name := fmt.Sprintf("vfioctl-segv-%d", time.Now().UnixNano())
		go func() {
			for end := time.Now().Add(time.Minute); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
				cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
				for _, f := range cmdlines {
					if b, _ := os.ReadFile(f); bytes.Contains(b, []byte(name)) {
						pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
						syscall.Kill(pid, syscall.SIGSEGV)
						return
					}
				}
			}
		}()
		res, err := boot(Spec{Kernel: "legacy", Profile: "intel", Timeout: time.Minute, QEMUArgs: []string{"-name", name},
			Commands: []frame.Command{{Name: "hang", Argv: []string{"/bin/sleep", "3600"}}}})
		if err != nil {
			t.Fatal(err)
		}
		if why := machineFailed(res); !strings.HasPrefix(why, "QEMU itself died of segmentation fault") {
			t.Fatalf("QEMU killed by SIGSEGV: machineFailed = %q (err %v), want it named as QEMU's own fault", why, res.Err)
		}
	})
	t.Run("guest makes no progress", func(t *testing.T) {
		// vCPUs that never run (QEMU's -S here; a /dev/kvm that cannot run
		// guests in the field): reported as no progress, long before the
		// VM's own timeout.
		defer func(d time.Duration) { NoProgressTimeout = d }(NoProgressTimeout)
		NoProgressTimeout = 5 * time.Second
		start := time.Now()
		res, err := boot(Spec{Kernel: "legacy", Profile: "intel", QEMUArgs: []string{"-S"}, Timeout: 2 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if res.Err == nil || !strings.Contains(res.Err.Error(), "no progress") {
			t.Fatalf("stopped guest: err = %v", res.Err)
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Errorf("stopped guest took %s to be reported with a 5 s progress limit", d)
		}
	})
}

// TestModuleOf: packages of the library build from the root; a module of
// its own inside the repository (the device plugin, an outside example)
// builds in its directory.
func TestModuleOf(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for pkg, want := range map[string][2]string{
		"./tests/e2e/guest":    {root, "./tests/e2e/guest"},
		"./vfio":               {root, "./vfio"},
		"deviceplugin/guest":   {filepath.Join(root, "deviceplugin"), "./guest"},
		"./deviceplugin/guest": {filepath.Join(root, "deviceplugin"), "./guest"},
		"examples/vmm":         {filepath.Join(root, "examples", "vmm"), "."},
	} {
		if dir, target := moduleOf(root, pkg); dir != want[0] || target != want[1] {
			t.Errorf("moduleOf(%q) = %s, %s; want %s, %s", pkg, dir, target, want[0], want[1])
		}
	}
}
