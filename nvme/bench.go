package nvme

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// BenchOptions configure Bench.
type BenchOptions struct {
	Depth    int           // commands kept outstanding on each queue (default 1)
	Duration time.Duration // how long to measure (default 5 s)
	// Warmup runs the workload this long before measuring: caches, the
	// IOMMU's IOTLB and the CPU frequency settle (default none).
	Warmup time.Duration
	Size   int // bytes per command, whole blocks (default 4096)
	// Queues is how many I/O queue pairs to drive, each from its own
	// thread (default 1; at most Controller.Queues()).
	Queues int
	// CPUs pins queue i's thread to CPUs[i%len(CPUs)], as SPDK pins its
	// reactors, and with interrupts steers the queue's vector there too.
	// Empty: the threads are not pinned.
	CPUs []int
	// WritePercent is the share of commands that are writes, 0 to 50.
	// Each write puts back the data its buffer has just read to the blocks
	// it came from, so the namespace keeps its contents.
	WritePercent int
	// Check, if set, is given each read's byte offset and data and returns
	// an error if they are wrong, which ends the benchmark. It runs while
	// the buffer's next command is in flight (each buffer is doubled), so
	// its time is in no command's latency.
	Check func(off int64, data []byte) error
	// Progress, if set, is called about once a second with the I/Os so
	// far and the time elapsed (warmup included).
	Progress func(ios uint64, elapsed time.Duration)
}

// Bench runs random, size-aligned reads (and writes, with WritePercent)
// of ns through its first o.Queues queues for o.Duration after o.Warmup,
// keeping o.Depth commands outstanding on each, and reports IOPS and the
// exact latency percentiles. A command's latency runs from a clock read
// before its submission-queue entry is written to one after its
// completion is seen (one read serves the completions seen together and
// the commands submitted after them); the elapsed time from the start of
// measuring to the last measured completion. Its loop allocates nothing.
// A program that does nothing else while it runs does best with
// GOMAXPROCS at o.Queues, as vfioctl nvme bench sets it: a polling
// worker then yields every millisecond, which costs nothing when no P is
// idle, and the runtime never preempts it. With more Ps each worker is
// locked to its thread, and every 10 ms the runtime preempts it, handing
// its P to another thread and back, and wakes an idle P's thread to look
// for work. With o.CPUs it also does best with its other threads on those
// CPUs (vfioctl nvme bench --cpu pins the whole process): the runtime's
// threads, woken elsewhere, disturb CPUs meant to stay idle, and under
// emulation take host time from the device.
func (ns *Namespace) Bench(o BenchOptions) (BenchResult, error) {
	if o.Depth <= 0 {
		o.Depth = 1
	}
	if o.Duration <= 0 {
		o.Duration = 5 * time.Second
	}
	if o.Size <= 0 {
		o.Size = 4096
	}
	if o.Queues <= 0 {
		o.Queues = 1
	}
	if o.Queues > len(ns.c.io) {
		return BenchResult{}, ns.bad("%d queues: the controller was opened with %d (Options.Queues)", o.Queues, len(ns.c.io))
	}
	if o.Depth > ns.c.io[0].Depth() {
		return BenchResult{}, ns.bad("depth %d: the queues take %d", o.Depth, ns.c.io[0].Depth())
	}
	if o.Size%ns.Info.BlockSize != 0 || o.Size > ns.c.MaxTransfer() || uint64(o.Size) > ns.Info.Bytes() {
		return BenchResult{}, ns.bad("commands of %d bytes", o.Size)
	}
	if o.WritePercent < 0 || o.WritePercent > 50 {
		return BenchResult{}, ns.bad("%d %% writes: 0 to 50 (each write rewrites a read)", o.WritePercent)
	}
	if o.Warmup < 0 {
		return BenchResult{}, ns.bad("a negative warmup")
	}
	ws := make([]*benchWorker, o.Queues)
	defer func() {
		for _, w := range ws {
			if w != nil {
				w.release()
			}
		}
	}()
	for i := range ws {
		cpu := -1
		if len(o.CPUs) > 0 {
			cpu = o.CPUs[i%len(o.CPUs)]
		}
		w, err := newBenchWorker(ns, ns.c.io[i], &o, cpu, uint64(i))
		if err != nil {
			return BenchResult{}, err
		}
		ws[i] = w
	}
	// The runtime's own work done before the clock starts: a collection,
	// and the free heap handed back to the kernel now rather than by the
	// scavenger during the run (its madvise calls cost the polling
	// threads TLB shootdowns).
	runtime.GC()
	debug.FreeOSMemory()
	begin := mono()
	measure := begin + int64(o.Warmup)
	end := measure + int64(o.Duration)
	var wg sync.WaitGroup
	errs := make([]error, len(ws))
	for i, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = w.run(begin, measure, end, ws)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return BenchResult{}, err
	}
	all := ws[0].lat
	last, writes, checked := int64(0), uint64(0), uint64(0)
	for i, w := range ws {
		if i > 0 {
			all.Merge(w.lat)
		}
		last, writes, checked = max(last, w.last), writes+w.writes, checked+w.checked
	}
	r := all.Result(time.Duration(last - measure))
	r.Writes, r.Checked = writes, checked
	return r, nil
}

// benchSlot is one outstanding command's state: its buffers (two when
// reads are checked: one in flight, one being checked), the blocks it
// moves and when it was submitted.
type benchSlot struct {
	buf     [2]Buffer
	cur     int
	lba     uint64
	write   bool
	started int64
}

// benchDone is a completed command, kept while its slot moves on.
type benchDone struct {
	started int64
	lba     uint64
	write   bool
	buf     Buffer
}

// benchWorker drives one queue pair from one thread.
type benchWorker struct {
	ns    *Namespace
	q     *QueuePair
	o     *BenchOptions
	cpu   int
	slots []benchSlot
	byCID []int32 // command id -> slot
	done  []benchDone
	lat   *Latencies

	rnd            uint64
	slotsPerIO     uint64 // blocks per command
	places         uint64 // size-aligned places in the namespace
	writeThreshold uint64 // of 1<<16: a read is followed by a write below it
	ios            atomic.Uint64
	last           int64 // the last measured completion
	writes         uint64
	checked        uint64
}

func newBenchWorker(ns *Namespace, q *QueuePair, o *BenchOptions, cpu int, seed uint64) (*benchWorker, error) {
	w := &benchWorker{
		ns: ns, q: q, o: o, cpu: cpu,
		slots:      make([]benchSlot, o.Depth),
		byCID:      make([]int32, q.Depth()),
		done:       make([]benchDone, o.Depth),
		lat:        NewLatencies(1 << 18),
		rnd:        (uint64(time.Now().UnixNano()) + seed*0x9e3779b97f4a7c15) | 1,
		slotsPerIO: uint64(o.Size / ns.Info.BlockSize),
		places:     ns.Info.Bytes() / uint64(o.Size),
		// After a read, a write with probability w/(100-w) makes w % of
		// all commands writes.
		writeThreshold: uint64(o.WritePercent) << 16 / uint64(100-o.WritePercent),
	}
	bufs := 1
	if o.Check != nil {
		bufs = 2
	}
	for i := range w.slots {
		w.slots[i].lba = ^uint64(0)
		for j := 0; j < bufs; j++ {
			b, err := ns.c.pool.get(o.Size)
			if err != nil {
				return w, err
			}
			w.slots[i].buf[j] = b
		}
	}
	return w, nil
}

// release gives the worker's buffers back to the pool.
func (w *benchWorker) release() {
	for i := range w.slots {
		for _, b := range w.slots[i].buf {
			if b.b != nil {
				_ = w.ns.c.pool.put(b)
			}
		}
	}
}

func (w *benchWorker) next() uint64 { // xorshift64
	w.rnd ^= w.rnd << 13
	w.rnd ^= w.rnd >> 7
	w.rnd ^= w.rnd << 17
	return w.rnd
}

// submit (w.q.mu held) queues slot i's next command without ringing: a
// write of the data it has just read back to where it came from, or a
// read of a random place.
func (w *benchWorker) submit(i int, now int64) error {
	s := &w.slots[i]
	op := uint8(OpRead)
	if !s.write && s.lba != ^uint64(0) && w.next()&0xffff < w.writeThreshold {
		op, s.write = OpWrite, true
	} else {
		s.write = false
		s.lba = w.next() % w.places * w.slotsPerIO
		if w.o.Check != nil {
			s.cur ^= 1
		}
	}
	s.started = now
	cid, err := w.ns.enqueueLocked(w.q, op, s.lba, s.buf[s.cur])
	if err != nil {
		return err
	}
	w.byCID[cid] = int32(i)
	return nil
}

// submitBatch (w.q.mu held) queues the next command of each of slots and
// rings once.
func (w *benchWorker) submitBatch(slots []int32, now int64) error {
	for _, i := range slots {
		if err := w.submit(int(i), now); err != nil {
			return err
		}
	}
	w.q.ring()
	return nil
}

// run keeps the queue busy until end, measuring the commands submitted
// from measure on, and waits for the last of them. Worker 0 reports
// progress for all of ws.
func (w *benchWorker) run(begin, measure, end int64, ws []*benchWorker) error {
	// The runtime preempts a goroutine that runs 10 ms without
	// rescheduling (sysmon's signal). Preempting one locked to its thread
	// hands its P to another thread and back, two futex wakeups (about
	// 170 µs under QEMU), as would a Gosched. A polling worker that every
	// P is busy with (GOMAXPROCS at most the workers, as vfioctl nvme
	// bench sets it) instead stays unlocked and yields every millisecond:
	// with no idle P to wake and nothing else to run, Gosched puts it back
	// on its own thread at once, and sysmon never has cause to preempt.
	// Otherwise, and when it sleeps on the vector, it is locked to its
	// thread, which keeps it where its pinning and caches are.
	yield := w.q.evfd < 0 && runtime.GOMAXPROCS(0) <= len(ws)
	if !yield {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	var pin threadPin
	if w.cpu >= 0 {
		if err := pin.follow(w.cpu); err != nil {
			return fmt.Errorf("nvme: bench: pinning queue %d to CPU %d: %w", w.q.id, w.cpu, err)
		}
		defer pin.restore()
		if w.q.evfd >= 0 {
			old, err := w.q.SteerInterrupt(w.cpu)
			if err != nil {
				return fmt.Errorf("nvme: bench: %w", err)
			}
			defer w.q.SteerInterrupt(old...)
		}
	}
	// The worker owns its queue for the run: it holds the queue's lock
	// throughout (sleeping on the vector releases it meanwhile, as Poll
	// does), so a command costs no lock of its own. Close waits for the
	// run, which ends at the next submission it refuses.
	w.q.mu.Lock()
	defer w.q.mu.Unlock()
	var failed error
	// The slots whose commands completed, looked up as Poll reports them:
	// a command id is free for reuse once reported, so the slots must be
	// known before any of them is resubmitted.
	finished := make([]int32, 0, w.q.Depth())
	done := func(cid uint16, err error) {
		if err != nil && failed == nil {
			failed = err
		}
		finished = append(finished, w.byCID[cid])
	}
	reserved := false
	nextYield := int64(0)
	report := begin + int64(time.Second)
	now := mono()
	all := make([]int32, len(w.slots))
	for i := range all {
		all[i] = int32(i)
	}
	if err := w.submitBatch(all, now); err != nil {
		return err
	}
	outstanding := len(w.slots)
	for outstanding > 0 {
		finished = finished[:0]
		if _, err := w.q.poll(true, done); err != nil {
			return err
		}
		if failed != nil {
			return failed
		}
		now = mono()
		if yield && now >= nextYield {
			runtime.Gosched()
			nextYield = now + int64(time.Millisecond)
			if w.cpu >= 0 {
				if err := pin.follow(w.cpu); err != nil {
					return fmt.Errorf("nvme: bench: pinning queue %d to CPU %d: %w", w.q.id, w.cpu, err)
				}
			}
		}
		stop := now >= end
		if !reserved && now >= measure && w.o.Warmup > 0 {
			// Room for every latency at the warmup's rate, and a quarter
			// more, allocated before measuring.
			want := int(float64(w.ios.Load()) * float64(w.o.Duration) / float64(now-begin) * 1.25)
			if want > cap(w.lat.ns) {
				w.lat.ns = make([]uint32, 0, want)
			}
			reserved = true
		}
		// Resubmit first, under one lock with one doorbell for the batch,
		// then the bookkeeping: the controller works meanwhile. Each
		// slot's completed command is remembered before its next replaces
		// it.
		for k, i := range finished {
			s := &w.slots[i]
			w.done[k] = benchDone{started: s.started, lba: s.lba, write: s.write, buf: s.buf[s.cur]}
		}
		outstanding -= len(finished)
		if !stop {
			if err := w.submitBatch(finished, now); err != nil {
				return err
			}
			outstanding += len(finished)
		}
		for k := range finished {
			d := &w.done[k]
			if d.started >= measure {
				w.lat.Add(time.Duration(now - d.started))
				w.last = now
				if d.write {
					w.writes++
				}
			}
			if !d.write && w.o.Check != nil {
				off := int64(d.lba) * int64(w.ns.Info.BlockSize)
				if err := w.o.Check(off, d.buf.b); err != nil {
					return fmt.Errorf("nvme: bench: queue %d: the read at byte %d: %w", w.q.id, off, err)
				}
				w.checked++
			}
		}
		if w.o.Progress != nil {
			w.ios.Add(uint64(len(finished)))
			if w == ws[0] && now >= report {
				var n uint64
				for _, o := range ws {
					n += o.ios.Load()
				}
				w.o.Progress(n, time.Duration(now-begin))
				report = now + int64(time.Second)
			}
		} else if !reserved {
			w.ios.Add(uint64(len(finished)))
		}
	}
	return nil
}

// threadPin keeps a polling worker's thread on one CPU. An unlocked
// worker may resume on another thread after a yield (rarely: only if
// another thread took its P meanwhile); follow then gives the thread it
// left its affinity back and pins the new one. restore undoes the last.
type threadPin struct {
	tid int // 0: nothing pinned
	old unix.CPUSet
}

func (p *threadPin) follow(cpu int) error {
	tid := unix.Gettid()
	if tid == p.tid {
		return nil
	}
	p.restore()
	var old, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return err
	}
	one.Set(cpu)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		return err
	}
	p.tid, p.old = tid, old
	return nil
}

func (p *threadPin) restore() {
	if p.tid != 0 {
		_ = unix.SchedSetaffinity(p.tid, &p.old)
		p.tid = 0
	}
}
