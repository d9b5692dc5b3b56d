package guest

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/nvme"
	"github.com/vfioctl/vfioctl/pci"
	"github.com/vfioctl/vfioctl/vfio"
)

// benchRow is one configuration of the NVMe benchmark: a workload and
// who serves it.
type benchRow struct {
	workload, driver string
	kernel           bool // the kernel's nvme driver (a baseline)
	run              func() (nvme.BenchResult, error)
}

// The workloads: 4 KiB random commands over the whole namespace.
const (
	wQD1   = "QD1 read"
	wQD32  = "QD32 read"
	wTwo   = "QD32 read, 2 queues on 2 threads (16 each)"
	wMixed = "QD32 70 % read / 30 % write"
)

// TestNVMeVersusKernel runs in the benchmark boots (make bench): 4 KiB
// random commands on the nvme, served by the userspace driver (polled,
// MSI-X and hybrid; pinned and not; cdev and the type1 container) and by
// the kernel's nvme driver (our own pread and io_uring loops, and Debian's
// fio at its defaults and at its strongest: pvsync2 and io_uring with
// hipri on poll queues, registered files and buffers, SQ polling). Every
// row is timed the same way (a clock read before the submission, one after
// the completion; exact nearest-rank percentiles; the elapsed time from
// the start of measuring to the last completion; a warmup first), rounds
// run every row in a rotating order, and the table gives each median with
// the rounds' min-max beside it. Every read of our rows is checked against
// the pattern the host wrote (8 bytes of each 512), so a driver that reads
// the wrong blocks fails the test. VFIOCTL_NVME_BENCH_ROWS, a regular
// expression, keeps the rows whose "workload, driver" it matches (the
// iommu.passthrough=1 boot: "kernel:").
func TestNVMeVersusKernel(t *testing.T) {
	if os.Getenv("VFIOCTL_NVME_BENCH") == "" {
		t.Skip("runs in the benchmark boot (make bench)")
	}
	per, err := time.ParseDuration(os.Getenv("VFIOCTL_NVME_BENCH"))
	if err != nil {
		t.Fatal(err)
	}
	const warm, rounds = time.Second, 3
	addr := findDevice(t, wantDevices["nvme"])
	fio, err := exec.LookPath("fio")
	if err != nil {
		t.Fatalf("the bench boot carries Debian's fio: %v", err)
	}
	b := &benchBoot{t: t, addr: addr, fio: fio, per: per, warm: warm}
	ours := func(o nvme.Options, be vfio.Backend, iommu vfio.IOMMUType, bo nvme.BenchOptions) func() (nvme.BenchResult, error) {
		return func() (nvme.BenchResult, error) { return b.ours(o, be, iommu, bo) }
	}
	pinned := []int{1}
	cdev := vfio.Cdev
	hybrid := nvme.Options{Interrupts: true, PollBeforeSleep: 100 * time.Microsecond}
	fioStrong32 := []string{"--ioengine=io_uring", "--hipri", "--registerfiles", "--fixedbufs", "--sqthread_poll", "--sqthread_poll_cpu=0", "--cpus_allowed=1", "--iodepth=32"}
	rows := []benchRow{
		{wQD1, "vfioctl polled, pinned (CPU 1)", false, ours(nvme.Options{}, cdev, 0, nvme.BenchOptions{Depth: 1, CPUs: pinned})},
		{wQD1, "vfioctl polled, not pinned", false, ours(nvme.Options{}, cdev, 0, nvme.BenchOptions{Depth: 1})},
		{wQD1, "vfioctl MSI-X, pinned, vector on CPU 1", false, ours(nvme.Options{Interrupts: true}, cdev, 0, nvme.BenchOptions{Depth: 1, CPUs: pinned})},
		{wQD1, "vfioctl hybrid (spin 100 µs, then MSI-X), pinned", false, ours(hybrid, cdev, 0, nvme.BenchOptions{Depth: 1, CPUs: pinned})},
		{wQD1, "vfioctl polled, type1v2 container, pinned", false, ours(nvme.Options{}, vfio.Legacy, vfio.Type1v2, nvme.BenchOptions{Depth: 1, CPUs: pinned})},
		{wQD1, "kernel: pread O_DIRECT (interrupts), pinned", true, func() (nvme.BenchResult, error) { return b.kernel(1, 0) }},
		{wQD1, "kernel: fio psync (interrupts)", true, b.fioRow("--ioengine=psync", "--cpus_allowed=1", "--iodepth=1")},
		{wQD1, "kernel: fio pvsync2 hipri (poll queue)", true, b.fioRow("--ioengine=pvsync2", "--hipri", "--cpus_allowed=1", "--iodepth=1")},

		{wQD32, "vfioctl polled, pinned (CPU 1)", false, ours(nvme.Options{}, cdev, 0, nvme.BenchOptions{Depth: 32, CPUs: pinned})},
		{wQD32, "vfioctl polled, not pinned", false, ours(nvme.Options{}, cdev, 0, nvme.BenchOptions{Depth: 32})},
		{wQD32, "vfioctl MSI-X, pinned, vector on CPU 1", false, ours(nvme.Options{Interrupts: true}, cdev, 0, nvme.BenchOptions{Depth: 32, CPUs: pinned})},
		{wQD32, "vfioctl polled, type1v2 container, pinned", false, ours(nvme.Options{}, vfio.Legacy, vfio.Type1v2, nvme.BenchOptions{Depth: 32, CPUs: pinned})},
		{wQD32, "kernel: io_uring loop (interrupts), pinned", true, func() (nvme.BenchResult, error) { return b.kernel(32, 0) }},
		{wQD32, "kernel: fio io_uring, defaults (interrupts)", true, b.fioRow("--ioengine=io_uring", "--cpus_allowed=1", "--iodepth=32")},
		{wQD32, "kernel: fio io_uring hipri registerfiles fixedbufs sqthread_poll", true, b.fioRow(fioStrong32...)},

		{wTwo, "vfioctl polled, 2 queues, CPUs 0 and 1", false, ours(nvme.Options{Queues: 2}, cdev, 0, nvme.BenchOptions{Depth: 16, Queues: 2, CPUs: []int{0, 1}})},
		{wTwo, "kernel: fio io_uring hipri registerfiles fixedbufs, 2 jobs on CPUs 0 and 1", true, b.fioRow("--ioengine=io_uring", "--hipri", "--registerfiles", "--fixedbufs", "--numjobs=2", "--cpus_allowed=0,1", "--cpus_allowed_policy=split", "--iodepth=16")},

		{wMixed, "vfioctl polled, pinned (CPU 1)", false, ours(nvme.Options{}, cdev, 0, nvme.BenchOptions{Depth: 32, CPUs: pinned, WritePercent: 30})},
		{wMixed, "kernel: io_uring loop (interrupts), pinned", true, func() (nvme.BenchResult, error) { return b.kernel(32, 30) }},
	}
	if re := os.Getenv("VFIOCTL_NVME_BENCH_ROWS"); re != "" {
		keep, err := regexp.Compile(re)
		if err != nil {
			t.Fatal(err)
		}
		rows = slices.DeleteFunc(rows, func(r benchRow) bool { return !keep.MatchString(r.workload + ", " + r.driver) })
	}
	results := make([][]nvme.BenchResult, len(rows))
	for round := 0; round < rounds; round++ {
		for k := range rows {
			i := (k + round*len(rows)/rounds) % len(rows) // each round starts a third further on
			r := rows[i]
			res, err := r.run()
			if err != nil {
				t.Fatalf("%s, %s: %v", r.workload, r.driver, err)
			}
			t.Logf("round %d %s, %s: %s", round+1, r.workload, r.driver, res)
			results[i] = append(results[i], res)
		}
	}
	t.Log("NVMETABLE" + benchTable(rows, results))
}

// benchTable is the markdown table of the medians, with the spread of the
// rounds' IOPS and each row's IOPS over the best kernel row's.
func benchTable(rows []benchRow, results [][]nvme.BenchResult) string {
	median := func(rs []nvme.BenchResult, f func(nvme.BenchResult) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	iops := func(r nvme.BenchResult) float64 { return r.IOPS }
	us := func(f func(nvme.BenchResult) time.Duration) func(nvme.BenchResult) float64 {
		return func(r nvme.BenchResult) float64 { return float64(f(r)) / 1e3 }
	}
	best := map[string]float64{}
	for i, r := range rows {
		if r.kernel {
			best[r.workload] = max(best[r.workload], median(results[i], iops))
		}
	}
	var b strings.Builder
	b.WriteString("\n| workload | driver | IOPS, median (min–max of rounds) | p50 µs | p99 µs | p99.9 µs | vs best kernel row |\n|---|---|---|---|---|---|---|\n")
	for i, r := range rows {
		rs := results[i]
		lo, hi := rs[0].IOPS, rs[0].IOPS
		for _, x := range rs {
			lo, hi = min(lo, x.IOPS), max(hi, x.IOPS)
		}
		m := median(rs, iops)
		fmt.Fprintf(&b, "| %s | %s | %.0f (%.0f–%.0f) | %.0f | %.0f | %.0f | %.2f× |\n", r.workload, r.driver, m, lo, hi,
			median(rs, us(func(r nvme.BenchResult) time.Duration { return r.P50 })),
			median(rs, us(func(r nvme.BenchResult) time.Duration { return r.P99 })),
			median(rs, us(func(r nvme.BenchResult) time.Duration { return r.P999 })), m/best[r.workload])
	}
	return b.String()
}

// benchBoot runs the rows of one boot.
type benchBoot struct {
	t         *testing.T
	addr, fio string
	per, warm time.Duration
}

// benchByte is the byte the host's image holds at offset i
// (tests/e2e/nvmebench_test.go writes it).
func benchByte(i int64) byte { return byte(i*131 + i>>12) }

// blockWords are the image's 64-bit words within a 4 KiB block at offset
// 0: at a 4 KiB-aligned off, byte k holds byte(k*131) + byte(off>>12)
// (off*131 is a multiple of 256), so a block is these words with one byte
// added to each of their bytes.
var blockWords = func() (w [512]uint64) {
	for i := range w {
		for b := 0; b < 8; b++ {
			w[i] |= uint64(benchByte(int64(i*8+b))) << (8 * b)
		}
	}
	return w
}()

// addBytes adds a and b bytewise, each byte modulo 256.
func addBytes(a, b uint64) uint64 {
	const high = 0x8080808080808080
	return ((a &^ high) + (b &^ high)) ^ ((a ^ b) & high)
}

// checkPattern checks 8 bytes of every 512 of a read at off against the
// image: a word compare each where the read is 4 KiB-aligned, so the
// check costs the polling thread little.
func checkPattern(off int64, p []byte) error {
	for at := 0; at+8 <= len(p); at += 512 {
		o := off + int64(at)
		got := binary.LittleEndian.Uint64(p[at:])
		var want uint64
		if off%4096 == 0 {
			want = addBytes(blockWords[o%4096/8], uint64(byte(o>>12))*0x0101010101010101)
		} else {
			for k := 0; k < 8; k++ {
				want |= uint64(benchByte(o+int64(k))) << (8 * k)
			}
		}
		if got != want {
			return fmt.Errorf("bytes %d-%d read %#016x; the image has %#016x", o, o+7, got, want)
		}
	}
	return nil
}

// ours runs the userspace driver's Bench on the nvme through backend be.
func (b *benchBoot) ours(o nvme.Options, be vfio.Backend, iommu vfio.IOMMUType, bo nvme.BenchOptions) (nvme.BenchResult, error) {
	if err := toDriver(b.addr, pci.VFIODriver); err != nil {
		return nvme.BenchResult{}, err
	}
	h, err := vfio.Open(b.addr, &vfio.Options{Backend: be, IOMMU: iommu})
	if err != nil {
		return nvme.BenchResult{}, err
	}
	defer h.Close()
	o.QueueDepth = 64
	// As vfioctl nvme bench does: shadow doorbells only with more than one
	// command in flight (nvme.Options.NoShadowDoorbells says why).
	o.NoShadowDoorbells = bo.Depth == 1
	c, err := nvme.New(h, &o)
	if err != nil {
		return nvme.BenchResult{}, err
	}
	defer c.Close()
	ns, err := c.Namespace(1)
	if err != nil {
		return nvme.BenchResult{}, err
	}
	bo.Duration, bo.Warmup, bo.Check = b.per, b.warm, checkPattern
	// One P per polling queue, as Bench's doc advises and vfioctl nvme
	// bench does: the test binary does nothing else meanwhile.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(max(bo.Queues, 1)))
	return ns.Bench(bo)
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

// disk gives the nvme back to the kernel's driver and returns its
// namespace's block device.
func (b *benchBoot) disk() (string, error) {
	if err := toDriver(b.addr, "nvme"); err != nil {
		return "", err
	}
	var disk string
	waitFor(b.t, "the kernel's namespace of "+b.addr, func() bool {
		m, _ := filepath.Glob("/sys/bus/pci/devices/" + b.addr + "/nvme/nvme*/nvme*n1")
		if len(m) == 1 {
			disk = "/dev/" + filepath.Base(m[0])
		}
		_, err := os.Stat(disk)
		return disk != "" && err == nil
	})
	return disk, nil
}

// kernel runs our own loop on the kernel's nvme driver, on a thread
// pinned to CPU 1: O_DIRECT pread at depth 1, io_uring (interrupt-driven:
// no poll queues, no registered buffers) above, with writePct % writes
// that put back what was just read.
func (b *benchBoot) kernel(depth, writePct int) (nvme.BenchResult, error) {
	disk, err := b.disk()
	if err != nil {
		return nvme.BenchResult{}, err
	}
	fd, err := unix.Open(disk, unix.O_RDWR|unix.O_DIRECT, 0)
	if err != nil {
		return nvme.BenchResult{}, err
	}
	defer unix.Close(fd)
	sectors, err := strconv.ParseUint(sysfsRead(b.t, "/sys/block/"+filepath.Base(disk)+"/size"), 10, 64)
	if err != nil {
		return nvme.BenchResult{}, err
	}
	type out struct {
		r   nvme.BenchResult
		err error
	}
	ch := make(chan out)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		var one unix.CPUSet
		one.Set(1)
		if err := unix.SchedSetaffinity(0, &one); err != nil {
			ch <- out{err: err}
			return
		}
		r, err := kernelLoop(fd, sectors*512, depth, writePct, b.warm, b.per)
		ch <- out{r, err}
	}()
	o := <-ch
	return o.r, o.err
}

// benchEpoch anchors benchNow, the clock of our kernel loops: the
// monotonic clock, read as nvme.Bench reads it.
var benchEpoch = time.Now()

func benchNow() int64 { return int64(time.Since(benchEpoch)) }

// kernelLoop times 4 KiB commands on fd by the rules of nvme.Bench: a
// clock read before each submission and after each completion, the
// commands submitted during the warmup not measured, every read checked
// outside any latency, writes putting back what their buffer just read.
func kernelLoop(fd int, size uint64, depth, writePct int, warm, per time.Duration) (nvme.BenchResult, error) {
	type slot struct {
		buf     [2][]byte
		cur     int
		off     uint64
		write   bool
		started int64
	}
	slots := make([]slot, depth)
	for i := range slots {
		for j := range slots[i].buf {
			m, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
			if err != nil {
				return nvme.BenchResult{}, err
			}
			defer unix.Munmap(m)
			slots[i].buf[j] = m
		}
		slots[i].off = ^uint64(0)
	}
	rnd := uint64(time.Now().UnixNano()) | 1
	next := func() uint64 {
		rnd ^= rnd << 13
		rnd ^= rnd >> 7
		rnd ^= rnd << 17
		return rnd
	}
	threshold := uint64(writePct) << 16 / uint64(100-writePct)
	// choose picks slot s's next command, as nvme.Bench does.
	choose := func(s *slot) {
		if !s.write && s.off != ^uint64(0) && next()&0xffff < threshold {
			s.write = true
			return
		}
		s.write, s.cur, s.off = false, s.cur^1, next()%(size/4096)*4096
	}
	lat := nvme.NewLatencies(1 << 20)
	begin := benchNow()
	measure, end := begin+int64(warm), begin+int64(warm+per)
	var last int64
	var writes, checked uint64
	record := func(s *slot, now int64) {
		if s.started >= measure {
			lat.Add(time.Duration(now - s.started))
			last = now
			if s.write {
				writes++
			}
		}
	}
	if depth == 1 {
		s := &slots[0]
		for {
			choose(s)
			s.started = benchNow()
			var n int
			var err error
			if s.write {
				n, err = unix.Pwrite(fd, s.buf[s.cur], int64(s.off))
			} else {
				n, err = unix.Pread(fd, s.buf[s.cur], int64(s.off))
			}
			now := benchNow()
			if err != nil || n != 4096 {
				return nvme.BenchResult{}, fmt.Errorf("%d bytes at %d: %d, %v", 4096, s.off, n, err)
			}
			record(s, now)
			if !s.write {
				if err := checkPattern(int64(s.off), s.buf[s.cur]); err != nil {
					return nvme.BenchResult{}, err
				}
				checked++
			}
			if now >= end {
				break
			}
		}
	} else {
		r, err := newRing(uint32(depth))
		if err != nil {
			return nvme.BenchResult{}, err
		}
		defer r.close()
		submit := func(i int, now int64) {
			s := &slots[i]
			choose(s)
			s.started = now
			op := uint8(ioringOpRead)
			if s.write {
				op = ioringOpWrite
			}
			r.rw(op, fd, s.buf[s.cur], s.off, uint64(i))
		}
		now := benchNow()
		for i := range slots {
			submit(i, now)
		}
		outstanding := depth
		var failed error
		done := make([]int, 0, depth)
		for outstanding > 0 {
			if err := r.enter(1); err != nil {
				return nvme.BenchResult{}, err
			}
			done = done[:0]
			r.reap(func(tag uint64, res int32) {
				if res != 4096 && failed == nil {
					failed = fmt.Errorf("io_uring: result %d", res)
				}
				done = append(done, int(tag))
			})
			if failed != nil {
				return nvme.BenchResult{}, failed
			}
			now := benchNow()
			stop := now >= end
			for _, i := range done {
				s := &slots[i]
				record(s, now)
				read, buf, off := !s.write, s.buf[s.cur], s.off
				outstanding--
				if !stop {
					submit(i, now)
					outstanding++
				}
				if read {
					if err := checkPattern(int64(off), buf); err != nil {
						return nvme.BenchResult{}, err
					}
					checked++
				}
			}
		}
	}
	res := lat.Result(time.Duration(last - measure))
	res.Writes, res.Checked = writes, checked
	return res, nil
}

// fioRow is a row run by Debian's fio on the kernel's namespace: 4 KiB
// random reads, O_DIRECT, threads, the boot's warmup (ramp_time) and
// length, and every command's latency logged (log_avg_msec=0), from which
// the percentiles are computed as for the other rows.
func (b *benchBoot) fioRow(args ...string) func() (nvme.BenchResult, error) {
	return func() (nvme.BenchResult, error) {
		disk, err := b.disk()
		if err != nil {
			return nvme.BenchResult{}, err
		}
		dir, err := os.MkdirTemp("", "fio")
		if err != nil {
			return nvme.BenchResult{}, err
		}
		defer os.RemoveAll(dir)
		argv := append([]string{"--name=bench", "--filename=" + disk, "--rw=randread", "--bs=4k", "--direct=1", "--thread",
			"--time_based", "--ramp_time=" + b.warm.String(), "--runtime=" + b.per.String(), "--norandommap", "--randrepeat=0",
			"--group_reporting", "--output-format=json", "--write_lat_log=" + dir + "/f", "--log_avg_msec=0"}, args...)
		var stderr strings.Builder
		cmd := exec.Command(b.fio, argv...)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nvme.BenchResult{}, fmt.Errorf("fio %s: %v: %s", strings.Join(args, " "), err, stderr.String())
		}
		return fioResult(out, dir)
	}
}

// fioResult reads fio's JSON report (IOPS, runtime) and its per-command
// latency logs (the last total_ios entries: those after the ramp).
func fioResult(report []byte, dir string) (nvme.BenchResult, error) {
	var rep struct {
		Jobs []struct {
			Runtime int64 `json:"job_runtime"` // ms
			Read    struct {
				IOPS     float64 `json:"iops"`
				TotalIOs uint64  `json:"total_ios"`
			} `json:"read"`
		} `json:"jobs"`
	}
	if i := strings.IndexByte(string(report), '{'); i > 0 {
		report = report[i:] // fio may print notes first
	}
	if err := json.Unmarshal(report, &rep); err != nil || len(rep.Jobs) != 1 {
		return nvme.BenchResult{}, fmt.Errorf("fio's report: %v (%d jobs)", err, len(rep.Jobs))
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "f_lat.*.log"))
	if len(logs) == 0 {
		return nvme.BenchResult{}, fmt.Errorf("fio wrote no latency log in %s", dir)
	}
	lat := nvme.NewLatencies(int(rep.Jobs[0].Read.TotalIOs))
	for _, path := range logs {
		var ns []int64
		f, err := os.Open(path)
		if err != nil {
			return nvme.BenchResult{}, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Split(sc.Text(), ",")
			if len(fields) < 2 {
				continue
			}
			v, err := strconv.ParseInt(strings.TrimSpace(fields[1]), 10, 64)
			if err != nil {
				f.Close()
				return nvme.BenchResult{}, fmt.Errorf("%s: %q: %v", path, sc.Text(), err)
			}
			ns = append(ns, v)
		}
		f.Close()
		for _, v := range ns {
			lat.Add(time.Duration(v))
		}
	}
	job := rep.Jobs[0]
	// fio logs the commands after its ramp; a few in flight at its end
	// are logged and not counted (at most one queue's worth).
	if n := uint64(lat.Len()); n < job.Read.TotalIOs || n > job.Read.TotalIOs+64 {
		return nvme.BenchResult{}, fmt.Errorf("fio logged %d commands, reported %d", n, job.Read.TotalIOs)
	}
	r := lat.Result(time.Duration(job.Runtime) * time.Millisecond)
	r.IOPS = job.Read.IOPS
	return r, nil
}
