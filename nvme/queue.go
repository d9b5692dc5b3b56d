package nvme

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/vfio"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// QueuePair is a submission queue and its completion queue. Its methods
// are safe for concurrent use (one lock per pair); for the most I/O per
// core give each goroutine its own pair.
type QueuePair struct {
	c     *Controller
	id    int
	depth int // submission queue entries; at most depth-1 commands are outstanding
	// cqDepth is the completion queue's entries: for an I/O queue twice
	// depth (at most CAP.MQES), so that its head doorbell can lag. The
	// controller sees the queue full, and stops posting, when its view of
	// the entries in use reaches cqDepth-1; in use are the completions the
	// driver has not reaped (at most depth-1, one per outstanding command)
	// and those it reaped but has not announced, which it keeps below
	// cqDepth-depth by ringing when they reach it. So the queue
	// is never full, and most completions cost no head doorbell: with
	// shadow doorbells QEMU's nvme asks for a register write at every
	// head move, a VM exit each, one of the two a command cost at QD1.
	cqDepth int

	mu        sync.Mutex
	mem       Buffer // SQ entries, then CQ entries, then one PRP page per slot
	sq        []Command
	cq        []completion
	prps      []uint64 // a PRP list per command id, prpStride bytes apart
	prpStride int
	sqIOVA    uint64
	cqIOVA    uint64
	prpIOVA   uint64
	tail      uint16
	rung      uint16 // the tail the doorbell last published
	head      uint16
	phase     uint16
	unrung    int // completions reaped since the head doorbell was last written
	sqDB      doorbell
	cqDB      doorbell

	slots    []slot
	free     []uint16 // command ids not in flight
	finished []uint16 // completed Submit-ed commands Poll has not reported
	lost     int      // commands given up on (timed out) until Reset
	evfd     int      // the MSI-X vector's eventfd, waited on directly (no poller hop); -1: polled
}

// slot is one command id's state.
type slot struct {
	busy   bool
	async  bool // from Submit: reported by Poll
	done   bool
	lost   bool // timed out: never reported, freed by its completion or Reset
	status Status
	dw0    uint32
	// deadline (mono ns) is stamped by the first timeout scan that sees
	// the command outstanding, not by submit: no clock read per command.
	// 0: not yet stamped.
	deadline int64
}

const prpsPerPage = pageSize / 8

// newQueuePair carves a queue pair of depth entries out of the pool, with
// a PRP list per command id for transfers of up to maxXfer bytes. Lists
// are packed several to a page when they are short: a list may start
// anywhere in a page, as long as it does not cross into the next.
func newQueuePair(c *Controller, id, depth, maxXfer int, ev *vfio.Eventfd) (*QueuePair, error) {
	cqDepth := depth
	if id > 0 { // the admin queue's sizes are AQA's, kept equal
		cqDepth = min(2*depth, c.cap.mqes)
	}
	sqBytes := depth * int(unsafe.Sizeof(Command{}))
	cqBytes := cqDepth * int(unsafe.Sizeof(completion{}))
	sqPages := (sqBytes + pageSize - 1) / pageSize
	cqPages := (cqBytes + pageSize - 1) / pageSize
	stride := 0 // bytes of PRP list per command id
	if entries := (maxXfer+pageSize-1)/pageSize - 1; entries > 1 {
		for stride = 8; stride < entries*8; stride *= 2 {
		}
		stride = min(stride, pageSize)
	}
	prpBytes := (depth - 1) * stride
	prpPages := (prpBytes + pageSize - 1) / pageSize
	mem, err := c.pool.get((sqPages + cqPages + prpPages) * pageSize)
	if err != nil {
		return nil, err
	}
	b := mem.Bytes()
	evfd := -1
	if ev != nil {
		var err error
		if evfd, err = ev.FD(); err != nil {
			return nil, err
		}
	}
	q := &QueuePair{
		c: c, id: id, depth: depth, cqDepth: cqDepth, mem: mem, evfd: evfd, prpStride: stride,
		sq:       unsafe.Slice((*Command)(unsafe.Pointer(&b[0])), depth),
		cq:       unsafe.Slice((*completion)(unsafe.Pointer(&b[sqPages*pageSize])), cqDepth),
		sqIOVA:   mem.IOVA(),
		cqIOVA:   mem.IOVA() + uint64(sqPages*pageSize),
		prpIOVA:  mem.IOVA() + uint64((sqPages+cqPages)*pageSize),
		sqDB:     doorbell{reg: c.cap.sqDoorbell(id)},
		cqDB:     doorbell{reg: c.cap.cqDoorbell(id)},
		slots:    make([]slot, depth-1),
		free:     make([]uint16, 0, depth-1),
		finished: make([]uint16, 0, depth-1),
	}
	if prpBytes > 0 {
		q.prps = unsafe.Slice((*uint64)(unsafe.Pointer(&b[(sqPages+cqPages)*pageSize])), prpBytes/8)
	}
	q.reset()
	return q, nil
}

// reset empties both rings (after a controller reset or before creation).
func (q *QueuePair) reset() {
	clear(q.mem.Bytes())
	q.tail, q.rung, q.head, q.phase, q.unrung = 0, 0, 0, 1, 0
	q.free, q.finished, q.lost = q.free[:0], q.finished[:0], 0
	for i := len(q.slots) - 1; i >= 0; i-- {
		q.slots[i] = slot{}
		q.free = append(q.free, uint16(i))
	}
}

// ID is the queue pair's id (0: the admin queue).
func (q *QueuePair) ID() int { return q.id }

// Depth is the number of commands that can be outstanding at once.
func (q *QueuePair) Depth() int { return q.depth - 1 }

// setPRPs points cmd at n bytes of buf (page aligned, contiguous in IOVA):
// PRP1 the first page, PRP2 the second or the slot's PRP list. With n 0
// the command carries no data, or its own pointers (a queue's base).
func (q *QueuePair) setPRPs(cmd *Command, cid uint16, iova uint64, n int) error {
	if n == 0 {
		return nil
	}
	pages := (n + pageSize - 1) / pageSize
	cmd.PRP1, cmd.PRP2 = iova, 0
	switch {
	case pages == 1:
	case pages == 2:
		cmd.PRP2 = iova + pageSize
	case (pages-1)*8 <= q.prpStride:
		first := int(cid) * q.prpStride / 8
		list := q.prps[first : first+pages-1]
		for i := range list {
			list[i] = iova + uint64(i+1)*pageSize
		}
		cmd.PRP2 = q.prpIOVA + uint64(int(cid)*q.prpStride)
	default:
		return fmt.Errorf("nvme: a %d-byte transfer is more than queue %d's PRP lists take (%d)", n, q.id, (q.prpStride/8+1)*pageSize)
	}
	return nil
}

// submit (q.mu held) puts cmd, with n bytes at iova, on the ring and
// rings the doorbell; async commands are reported by Poll. A controller
// that is closed or needs Reset, a full queue or a transfer too large for
// the PRP lists is a CommandError naming op.
func (q *QueuePair) submit(op string, cmd *Command, iova uint64, n int, async bool) (uint16, error) {
	cid, err := q.enqueue(op, cmd, iova, n, async)
	if err == nil {
		q.ring()
	}
	return cid, err
}

// ring (q.mu held) publishes the submission queue's tail.
func (q *QueuePair) ring() {
	if q.tail != q.rung {
		q.rung = q.tail
		q.sqDB.ring(q.c, q.tail)
	}
}

// Ring tells the controller about the commands Enqueue put on the queue
// since the last doorbell write: one doorbell for the batch.
func (q *QueuePair) Ring() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.ring()
}

// enqueue (q.mu held) is submit without the doorbell.
func (q *QueuePair) enqueue(op string, cmd *Command, iova uint64, n int, async bool) (uint16, error) {
	if err := q.c.usable(q); err != nil {
		return 0, &CommandError{Op: op, Queue: q.id, Err: err}
	}
	if len(q.free) == 0 {
		return 0, &CommandError{Op: op, Queue: q.id, Err: fmt.Errorf("queue full (%d commands outstanding)", q.depth-1)}
	}
	cid := q.free[len(q.free)-1]
	if err := q.setPRPs(cmd, cid, iova, n); err != nil {
		return 0, &CommandError{Op: op, Queue: q.id, Err: err}
	}
	q.free = q.free[:len(q.free)-1]
	cmd.CID = cid
	q.sq[q.tail] = *cmd
	q.slots[cid] = slot{busy: true, async: async}
	q.tail++
	if int(q.tail) == q.depth {
		q.tail = 0
	}
	return cid, nil
}

// reap moves the completions the controller has posted into their slots
// and returns how many. It writes the head doorbell when cqDepth-depth or
// more completions have gone unannounced (every time for the admin queue).
func (q *QueuePair) reap() int {
	n := 0
	for {
		e := &q.cq[q.head]
		st := atomic.LoadUint32((*uint32)(unsafe.Pointer(&e.CID))) // CID and status, one load
		if uint16(st>>16)&1 != q.phase {
			break
		}
		cid := uint16(st)
		if int(cid) < len(q.slots) && q.slots[cid].busy {
			s := &q.slots[cid]
			switch {
			case s.lost:
				q.lost--
				q.release(cid)
			case s.async:
				s.done, s.status = true, statusOf(uint16(st>>16))
				q.finished = append(q.finished, cid)
			default:
				s.done, s.status, s.dw0 = true, statusOf(uint16(st>>16)), e.DW0
			}
		}
		q.head++
		if int(q.head) == q.cqDepth {
			q.head, q.phase = 0, q.phase^1
		}
		n++
	}
	if q.unrung += n; n > 0 && q.unrung >= q.cqDepth-q.depth {
		q.cqDB.ring(q.c, q.head)
		q.unrung = 0
	}
	return n
}

// release frees a completed slot and returns its result.
func (q *QueuePair) release(cid uint16) (Status, uint32) {
	s := q.slots[cid]
	q.slots[cid] = slot{}
	q.free = append(q.free, cid)
	return s.status, s.dw0
}

// wait waits (holding q.mu) until command cid completes, polling or on the
// queue's eventfd, up to its deadline.
func (q *QueuePair) wait(cid uint16) (Status, uint32, error) {
	for spins := 0; ; spins++ {
		q.reap()
		if q.slots[cid].done {
			st, dw0 := q.release(cid)
			return st, dw0, nil
		}
		if q.evfd < 0 && spins&1023 != 0 {
			continue
		}
		now := mono()
		s := &q.slots[cid]
		if s.deadline == 0 {
			s.deadline = now + int64(q.c.opts.Timeout)
		}
		if now >= s.deadline {
			return 0, 0, q.c.expired(q, cid)
		}
		if q.evfd >= 0 {
			if err := q.sleep(time.Duration(s.deadline - now)); err != nil {
				return 0, 0, err
			}
		}
	}
}

// oldest stamps the deadline of every outstanding command that has none
// (now plus the timeout) and returns the Submit-ed command that expires
// first, or -1 if none is out.
func (q *QueuePair) oldest(now int64) int {
	oldest := -1
	for cid := range q.slots {
		s := &q.slots[cid]
		if !s.busy || s.lost {
			continue
		}
		if s.deadline == 0 {
			s.deadline = now + int64(q.c.opts.Timeout)
		}
		if s.async && (oldest < 0 || s.deadline < q.slots[oldest].deadline) {
			oldest = cid
		}
	}
	return oldest
}

// exec runs one command to completion.
func (q *QueuePair) exec(op string, cmd *Command, iova uint64, n int) (uint32, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	cid, err := q.submit(op, cmd, iova, n, false)
	if err != nil {
		return 0, err
	}
	st, dw0, err := q.wait(cid)
	if err != nil {
		return 0, &CommandError{Op: op, Queue: q.id, Err: err}
	}
	if st != 0 {
		return dw0, &CommandError{Op: op, Queue: q.id, Status: st}
	}
	return dw0, nil
}

// sleep waits (q.mu held, released meanwhile) at most left for the
// queue's MSI-X vector to fire, unless a completion is already posted. It
// clears the eventfd's count first (a vector that fired for completions
// polled meanwhile must not cut the next sleep short) and looks at the
// completion queue once more, so one posted before the clear is not
// slept through. It polls the eventfd in this thread instead of parking
// the goroutine in Go's poller: one wakeup fewer on the completion path.
// Close signals the eventfd to end a wait, and closes it only while
// holding q.mu, which sleep retakes before it returns.
func (q *QueuePair) sleep(left time.Duration) error {
	var b [8]byte
	_, _ = unix.Read(q.evfd, b[:]) // EAGAIN when nothing fired
	if q.posted() {
		return nil
	}
	q.mu.Unlock()
	err := kernel.PollIn(q.evfd, left)
	q.mu.Lock()
	if q.c.closed.Load() {
		return vfioerr.ErrClosed
	}
	return err
}

// posted reports whether the controller has posted a completion the
// driver has not reaped.
func (q *QueuePair) posted() bool {
	st := atomic.LoadUint32((*uint32)(unsafe.Pointer(&q.cq[q.head].CID)))
	return uint16(st>>16)&1 == q.phase
}

// epoch anchors mono: time.Since of a time with a monotonic reading
// reads only the monotonic clock (one vDSO call; time.Now reads two).
var epoch = time.Now()

// mono is the monotonic clock in nanoseconds since epoch.
func mono() int64 { return int64(time.Since(epoch)) }

// SteerInterrupt sends the queue's MSI-X vector to cpus, the CPUs its
// waiting thread runs on, so a completion wakes it without a cross-CPU
// wakeup (vfio.Device.SetIRQAffinity). It returns the affinity it
// replaced. A polled queue has no vector to steer.
func (q *QueuePair) SteerInterrupt(cpus ...int) ([]int, error) {
	if q.evfd < 0 {
		return nil, fmt.Errorf("nvme: queue %d is polled: no interrupt to steer (Options.Interrupts)", q.id)
	}
	return q.c.dev.SetIRQAffinity(vfio.MSIXIRQ, q.id, cpus...)
}
