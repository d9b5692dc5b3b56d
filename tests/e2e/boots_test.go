package e2e

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vfioctl/vfioctl/hack/qemu"
)

// boot is one of TestVM's boots: a subtest, and the kernel variant it
// boots.
type boot struct {
	name   string
	kernel string
	run    func(t *testing.T)
}

// kernels are the guest kernels TestVM's boots need, built (or found in
// kernel.sh's cache) one after the other in the background while the
// boots whose kernels are ready run. On a machine with nothing cached the
// builds are half the time (44 of make test's 85 minutes on a fresh
// 2-core machine, all built before the first boot), while the guests,
// booted after, left the host 30 % idle. kernel.sh builds at a lower CPU
// priority, so the guests keep the CPU they need.
type kernels struct {
	mu      sync.Mutex
	changed *sync.Cond       // a build ended
	ended   map[string]error // variant -> nil or why its build failed
	log     []string         // how long each took, in their order
}

// buildKernels starts building the kernels of boots with build, in the
// order the boots first need them.
func buildKernels(boots []boot, build func(variant string) error) *kernels {
	var variants []string
	for _, b := range boots {
		if !contains(variants, b.kernel) {
			variants = append(variants, b.kernel)
		}
	}
	k := &kernels{ended: map[string]error{}}
	k.changed = sync.NewCond(&k.mu)
	go func() {
		for _, v := range variants {
			start := time.Now()
			err := build(v)
			k.mu.Lock()
			k.ended[v] = err
			k.log = append(k.log, fmt.Sprintf("%s %s", v, time.Since(start).Round(time.Second)))
			k.changed.Broadcast()
			k.mu.Unlock()
		}
	}()
	return k
}

// builtKernel is buildKernels' build for TestVM: kernel.sh, through the
// harness (which prints what it builds).
func builtKernel(variant string) error {
	_, err := qemu.Kernel(variant)
	return err
}

// err is how variant's build ended (k.mu held): nil, or why it failed.
func (k *kernels) err(variant string) error {
	if err := k.ended[variant]; err != nil {
		return fmt.Errorf("the %s kernel was not built: %w", variant, err)
	}
	return nil
}

// runBoots runs boots as subtests of t, n at a time. Each runner takes the
// first boot, in the order given (the longest first, so no long boot runs
// alone at the end), whose kernel has been built, and waits for the next
// build when none has. A boot whose kernel failed to build fails with
// the build's error.
func runBoots(t *testing.T, boots []boot, n int, k *kernels) {
	pending := append([]boot(nil), boots...)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k.mu.Lock()
			defer k.mu.Unlock()
			for len(pending) > 0 {
				i := slices.IndexFunc(pending, func(b boot) bool {
					_, built := k.ended[b.kernel]
					return built
				})
				if i < 0 {
					k.changed.Wait()
					continue
				}
				b := pending[i]
				pending = append(pending[:i], pending[i+1:]...)
				err := k.err(b.kernel)
				k.mu.Unlock()
				t.Run(b.name, func(t *testing.T) {
					if err != nil {
						t.Fatal(err)
					}
					b.run(t)
				})
				k.mu.Lock()
			}
		}()
	}
	wg.Wait()
	k.mu.Lock()
	defer k.mu.Unlock()
	t.Logf("kernels, each built or found in the cache, in: %s", strings.Join(k.log, ", "))
}

// parallelBoots is how many guests TestVM runs at once:
// VFIOCTL_E2E_PARALLEL, or one per host CPU and 2 GiB available (a guest
// has 1 GiB of RAM, and QEMU's TCG its translation buffers), at least one.
func parallelBoots(t *testing.T) int {
	if v := os.Getenv("VFIOCTL_E2E_PARALLEL"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("VFIOCTL_E2E_PARALLEL=%q: want a number of boots, 1 or more", v)
		}
		return n
	}
	n := runtime.NumCPU()
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			var kib int
			if _, err := fmt.Sscanf(l, "MemAvailable: %d kB", &kib); err == nil {
				n = min(n, kib>>21)
			}
		}
	}
	return max(n, 1)
}

// TestRunBoots runs fake boots (no VM): each starts only once its kernel
// is built, a runner takes the boots whose kernels are ready rather than
// waiting in line behind one whose kernel is not, and every boot runs
// once.
func TestRunBoots(t *testing.T) {
	var mu sync.Mutex
	built := map[string]bool{}
	var ran []string
	// Kernel b is built once boot a2 ran (or, should the runner wait for
	// b before running a2, after a while, so the test fails rather than
	// hangs).
	bBuilt := make(chan struct{})
	build := func(v string) error {
		if v == "b" {
			select {
			case <-bBuilt:
			case <-time.After(5 * time.Second):
			}
		}
		mu.Lock()
		defer mu.Unlock()
		built[v] = true
		return nil
	}
	fake := func(name, kernel string) boot {
		return boot{name, kernel, func(t *testing.T) {
			mu.Lock()
			defer mu.Unlock()
			if !built[kernel] {
				t.Errorf("boot %s started before its kernel %s was built", name, kernel)
			}
			ran = append(ran, name)
			if name == "a2" {
				close(bBuilt)
			}
		}}
	}
	boots := []boot{fake("a1", "a"), fake("b1", "b"), fake("a2", "a"), fake("b2", "b")}
	runBoots(t, boots, 1, buildKernels(boots, build))
	if got, want := strings.Join(ran, " "), "a1 a2 b1 b2"; got != want {
		t.Errorf("one runner ran %q, want %q (a boot whose kernel is ready before one whose kernel is not)", got, want)
	}

	// Two runners, several kernels built in turn: each boot once.
	built, ran = map[string]bool{}, nil
	boots = nil
	for _, k := range []string{"x", "y", "z"} {
		for i := range 3 {
			boots = append(boots, fake(fmt.Sprintf("%s%d", k, i), k))
		}
	}
	runBoots(t, boots, 2, buildKernels(boots, func(v string) error {
		time.Sleep(10 * time.Millisecond)
		return build(v)
	}))
	if len(ran) != len(boots) {
		t.Errorf("two runners ran %d boots (%v), want each of the %d once", len(ran), ran, len(boots))
	}
}
