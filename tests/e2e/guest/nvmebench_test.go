package guest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/nvme"
	"github.com/vfioctl/vfioctl/pci"
	"github.com/vfioctl/vfioctl/vfio"
)

// TestNVMeVersusKernel runs in the benchmark boot (make bench): 4 KiB
// random reads of the nvme at QD1 and QD32, by the userspace driver
// (polled and MSI-X, on the default backend and the legacy container) and
// by the kernel's nvme driver (O_DIRECT pread at QD1, io_uring at QD32), in
// interleaved rounds; it prints every run and the medians as a table.
func TestNVMeVersusKernel(t *testing.T) {
	if os.Getenv("VFIOCTL_NVME_BENCH") == "" {
		t.Skip("runs in the benchmark boot (make bench)")
	}
	per, err := time.ParseDuration(os.Getenv("VFIOCTL_NVME_BENCH"))
	if err != nil {
		t.Fatal(err)
	}
	addr := findDevice(t, wantDevices["nvme"])
	// As SPDK pins its reactors: the polling (and the pread and io_uring)
	// thread stays on one vCPU.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var cpus unix.CPUSet
	cpus.Set(1)
	if err := unix.SchedSetaffinity(0, &cpus); err != nil {
		t.Fatal(err)
	}
	type config struct {
		name  string
		depth int
		run   func(depth int) (nvme.BenchResult, error)
	}
	ours := func(b vfio.Backend, iommu vfio.IOMMUType, o nvme.Options) func(int) (nvme.BenchResult, error) {
		return func(depth int) (nvme.BenchResult, error) { return benchOurs(addr, b, iommu, o, depth, per) }
	}
	kernel := func(depth int) (nvme.BenchResult, error) { return benchKernel(t, addr, depth, per) }
	var configs []config
	for _, d := range []int{1, 32} {
		configs = append(configs,
			config{"vfioctl polled, " + vfio.Cdev.String(), d, ours(vfio.Cdev, 0, nvme.Options{})},
			config{"vfioctl polled, no shadow doorbells, " + vfio.Cdev.String(), d, ours(vfio.Cdev, 0, nvme.Options{NoShadowDoorbells: true})},
			config{"vfioctl MSI-X, " + vfio.Cdev.String(), d, ours(vfio.Cdev, 0, nvme.Options{Interrupts: true})},
			config{"vfioctl polled, type1v2", d, ours(vfio.Legacy, vfio.Type1v2, nvme.Options{})},
			config{"kernel nvme, " + map[int]string{1: "pread", 32: "io_uring"}[d], d, kernel},
		)
	}
	results := map[string][]nvme.BenchResult{}
	for round := 1; round <= 3; round++ {
		for _, c := range configs {
			key := fmt.Sprintf("QD%d %s", c.depth, c.name)
			r, err := c.run(c.depth)
			if err != nil {
				t.Fatalf("%s: %v", key, err)
			}
			t.Logf("round %d %s: %s", round, key, r)
			results[key] = append(results[key], r)
		}
	}
	median := func(rs []nvme.BenchResult, f func(nvme.BenchResult) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		sort.Float64s(v)
		return v[len(v)/2]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n| queue depth | driver | IOPS | p50 µs | p99 µs | vs kernel |\n|---|---|---|---|---|---|\n")
	for _, d := range []int{1, 32} {
		kern := median(results[fmt.Sprintf("QD%d kernel nvme, %s", d, map[int]string{1: "pread", 32: "io_uring"}[d])], func(r nvme.BenchResult) float64 { return r.IOPS })
		for _, c := range configs {
			if c.depth != d {
				continue
			}
			rs := results[fmt.Sprintf("QD%d %s", d, c.name)]
			iops := median(rs, func(r nvme.BenchResult) float64 { return r.IOPS })
			fmt.Fprintf(&b, "| %d | %s | %.0f | %.0f | %.0f | %.2f× |\n", d, c.name, iops,
				median(rs, func(r nvme.BenchResult) float64 { return float64(r.P50.Microseconds()) }),
				median(rs, func(r nvme.BenchResult) float64 { return float64(r.P99.Microseconds()) }), iops/kern)
		}
	}
	t.Log("NVMETABLE" + b.String())
}

// benchOurs opens the nvme through backend b and runs the userspace
// driver's benchmark on one queue.
func benchOurs(addr string, b vfio.Backend, iommu vfio.IOMMUType, o nvme.Options, depth int, per time.Duration) (nvme.BenchResult, error) {
	if err := toDriver(addr, pci.VFIODriver); err != nil {
		return nvme.BenchResult{}, err
	}
	h, err := vfio.Open(addr, &vfio.Options{Backend: b, IOMMU: iommu})
	if err != nil {
		return nvme.BenchResult{}, err
	}
	defer h.Close()
	o.QueueDepth = 64
	c, err := nvme.New(h, &o)
	if err != nil {
		return nvme.BenchResult{}, err
	}
	defer c.Close()
	ns, err := c.Namespace(1)
	if err != nil {
		return nvme.BenchResult{}, err
	}
	return ns.Bench(c.Queue(0), nvme.BenchOptions{Depth: depth, Duration: per, Pin: true, CPU: 1})
}

// toDriver binds addr to drv ("nvme" or vfio-pci) unless it is there.
func toDriver(addr, drv string) error {
	if sysfsDriver(addr) == drv {
		return nil
	}
	if drv == pci.VFIODriver {
		_, err := pci.Bind(addr, pci.BindOptions{Force: true})
		return err
	}
	_, err := pci.Restore(addr)
	return err
}

// benchKernel reads the namespace through the kernel's nvme driver with
// O_DIRECT: pread at depth 1, io_uring above.
func benchKernel(t *testing.T, addr string, depth int, per time.Duration) (nvme.BenchResult, error) {
	if err := toDriver(addr, "nvme"); err != nil {
		return nvme.BenchResult{}, err
	}
	var disk string
	waitFor(t, "the kernel's namespace of "+addr, func() bool {
		m, _ := filepath.Glob("/sys/bus/pci/devices/" + addr + "/nvme/nvme*/nvme*n1")
		if len(m) == 1 {
			disk = "/dev/" + filepath.Base(m[0])
		}
		_, err := os.Stat(disk)
		return disk != "" && err == nil
	})
	fd, err := unix.Open(disk, unix.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		return nvme.BenchResult{}, err
	}
	defer unix.Close(fd)
	sectors, err := strconv.ParseUint(sysfsRead(t, "/sys/block/"+filepath.Base(disk)+"/size"), 10, 64)
	if err != nil {
		return nvme.BenchResult{}, err
	}
	return kernelReads(fd, sectors*512, depth, per)
}

// kernelReads keeps depth 4 KiB O_DIRECT reads of fd in flight for per.
func kernelReads(fd int, size uint64, depth int, per time.Duration) (nvme.BenchResult, error) {
	bufs := make([][]byte, depth)
	for i := range bufs {
		b, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
		if err != nil {
			return nvme.BenchResult{}, err
		}
		defer unix.Munmap(b)
		bufs[i] = b
	}
	rnd := uint64(time.Now().UnixNano()) | 1
	next := func() uint64 {
		rnd ^= rnd << 13
		rnd ^= rnd >> 7
		rnd ^= rnd << 17
		return rnd % (size / 4096) * 4096
	}
	var lat []time.Duration
	start := time.Now()
	end := start.Add(per)
	if depth == 1 {
		for time.Now().Before(end) {
			t0 := time.Now()
			if _, err := unix.Pread(fd, bufs[0], int64(next())); err != nil {
				return nvme.BenchResult{}, err
			}
			lat = append(lat, time.Since(t0))
		}
	} else {
		r, err := newRing(uint32(depth))
		if err != nil {
			return nvme.BenchResult{}, err
		}
		defer r.close()
		started := make([]time.Time, depth)
		for i := range bufs {
			started[i] = time.Now()
			r.read(fd, bufs[i], next(), uint64(i))
		}
		outstanding := depth
		var failed error
		for outstanding > 0 {
			if err := r.enter(1); err != nil {
				return nvme.BenchResult{}, err
			}
			stop := time.Now().After(end)
			r.reap(func(tag uint64, res int32) {
				outstanding--
				lat = append(lat, time.Since(started[tag]))
				if res != 4096 && failed == nil {
					failed = fmt.Errorf("io_uring read: result %d", res)
				}
				if !stop {
					started[tag] = time.Now()
					r.read(fd, bufs[tag], next(), tag)
					outstanding++
				}
			})
			if failed != nil {
				return nvme.BenchResult{}, failed
			}
		}
	}
	el := time.Since(start)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return nvme.BenchResult{Reads: uint64(len(lat)), Elapsed: el, IOPS: float64(len(lat)) / el.Seconds(),
		P50: lat[len(lat)/2], P99: lat[len(lat)*99/100], Max: lat[len(lat)-1]}, nil
}
