package nvme

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Namespace is an active namespace of a controller.
type Namespace struct {
	c    *Controller
	Info NamespaceInfo
}

// ErrBadRequest: an I/O request the driver refuses before the controller
// sees it (its message says which rule it breaks). Nothing was sent.
var ErrBadRequest = errors.New("nvme: bad request")

func (ns *Namespace) bad(format string, args ...any) error {
	return fmt.Errorf("%w: namespace %d: %s", ErrBadRequest, ns.Info.ID, fmt.Sprintf(format, args...))
}

// command builds a Read or Write of buf at lba, checking it first: a
// non-empty whole number of blocks, within MaxTransfer and the namespace.
func (ns *Namespace) command(op uint8, lba uint64, buf Buffer, cmd *Command) error {
	n := len(buf.b)
	bs := ns.Info.BlockSize
	switch {
	case n == 0:
		return ns.bad("an empty transfer")
	case n%bs != 0:
		return ns.bad("%d bytes is not a whole number of %d-byte blocks", n, bs)
	case n > ns.c.MaxTransfer():
		return ns.bad("%d bytes is more than one command transfers (%d)", n, ns.c.MaxTransfer())
	}
	blocks := uint64(n / bs)
	if lba >= ns.Info.Blocks || blocks > ns.Info.Blocks-lba {
		return ns.bad("blocks %d to %d lie past the end (%d blocks)", lba, lba+blocks-1, ns.Info.Blocks)
	}
	*cmd = Command{Opcode: op, NSID: ns.Info.ID, CDW10: uint32(lba), CDW11: uint32(lba >> 32), CDW12: uint32(blocks - 1)}
	return nil
}

func opName(op uint8) string {
	switch op {
	case OpRead:
		return "read"
	case OpWrite:
		return "write"
	}
	return "flush"
}

// io runs one Read or Write to completion on q.
func (ns *Namespace) io(q *QueuePair, op uint8, lba uint64, buf Buffer) error {
	var cmd Command
	if err := ns.command(op, lba, buf, &cmd); err != nil {
		return err
	}
	_, err := q.exec(opName(op), &cmd, buf.iova, len(buf.b))
	return err
}

// Read reads len(buf) bytes from block lba into buf, waiting for them.
func (ns *Namespace) Read(q *QueuePair, lba uint64, buf Buffer) error {
	return ns.io(q, OpRead, lba, buf)
}

// Write writes buf to block lba, waiting for the controller to complete it.
func (ns *Namespace) Write(q *QueuePair, lba uint64, buf Buffer) error {
	return ns.io(q, OpWrite, lba, buf)
}

// Flush commits what the controller's volatile write cache holds.
func (ns *Namespace) Flush(q *QueuePair) error {
	_, err := q.exec("flush", &Command{Opcode: OpFlush, NSID: ns.Info.ID}, 0, 0)
	return err
}

// Submit queues a Read or Write of buf at lba on q without waiting and
// returns its command id; Poll reports its completion. At most q.Depth()
// commands are outstanding.
func (ns *Namespace) Submit(q *QueuePair, op uint8, lba uint64, buf Buffer) (uint16, error) {
	return ns.queue(q, op, lba, buf, true)
}

// Enqueue is Submit without the doorbell write: the command waits on the
// queue until Ring (or a later Submit) publishes it, so a batch of
// commands costs one doorbell write, which under virtualization is an
// exit each.
func (ns *Namespace) Enqueue(q *QueuePair, op uint8, lba uint64, buf Buffer) (uint16, error) {
	return ns.queue(q, op, lba, buf, false)
}

func (ns *Namespace) queue(q *QueuePair, op uint8, lba uint64, buf Buffer, ring bool) (uint16, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	cid, err := ns.enqueueLocked(q, op, lba, buf)
	if err == nil && ring {
		q.ring()
	}
	return cid, err
}

// enqueueLocked (q.mu held) checks and queues a Read or Write without the
// doorbell: a caller queuing a batch takes the lock once.
func (ns *Namespace) enqueueLocked(q *QueuePair, op uint8, lba uint64, buf Buffer) (uint16, error) {
	if op != OpRead && op != OpWrite {
		return 0, ns.bad("opcode %#x: Submit and Enqueue take OpRead or OpWrite", op)
	}
	var cmd Command
	if err := ns.command(op, lba, buf, &cmd); err != nil {
		return 0, err
	}
	return q.enqueue(opName(op), &cmd, buf.iova, len(buf.b), true)
}

// Poll reports the commands of q that completed, calling done for each
// with its id and nil or its error. With wait, it waits until at least
// one completes or an outstanding command's deadline passes: spinning on
// the completion queue (polled), sleeping on the queue's interrupt
// (Options.Interrupts), or spinning for Options.PollBeforeSleep and then
// sleeping (hybrid); without, it returns at once. It allocates nothing
// unless a command fails.
func (q *QueuePair) Poll(wait bool, done func(cid uint16, err error)) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.poll(wait, done)
}

// poll is Poll with q.mu held.
func (q *QueuePair) poll(wait bool, done func(cid uint16, err error)) (int, error) {
	var spinEnd int64 // hybrid: when spinning gives way to sleeping
	for spins := 0; ; spins++ {
		q.reap()
		if n := len(q.finished); n > 0 {
			for _, cid := range q.finished {
				st, _ := q.release(cid)
				var err error
				if st != 0 {
					err = &CommandError{Op: "I/O", Queue: q.id, Status: st}
				}
				done(cid, err)
			}
			q.finished = q.finished[:0]
			return n, nil
		}
		if !wait || len(q.free)+q.lost == len(q.slots) {
			return 0, nil
		}
		// Spinning, the clock is read every 16th turn (hybrid: is it time
		// to sleep?) or 1024th (polled: has a command expired?); it costs
		// more than a look at the completion queue.
		hybrid := q.evfd >= 0 && q.c.opts.PollBeforeSleep > 0
		if (q.evfd < 0 && spins&1023 != 0) || (hybrid && spins&15 != 0) {
			continue
		}
		now := mono()
		if hybrid {
			if spinEnd == 0 {
				spinEnd = now + int64(q.c.opts.PollBeforeSleep)
			}
			if now < spinEnd {
				continue
			}
		}
		oldest := q.oldest(now)
		if oldest < 0 {
			return 0, nil // only exec's commands are out: they report themselves
		}
		left := q.slots[oldest].deadline - now
		if left <= 0 {
			err := q.c.expired(q, uint16(oldest))
			done(uint16(oldest), &CommandError{Op: "I/O", Queue: q.id, Err: err})
			return 1, nil
		}
		if q.evfd >= 0 {
			if err := q.sleep(time.Duration(left)); err != nil {
				return 0, err
			}
		}
	}
}

// Span is the byte range of blocks [lba, lba+blocks) for ReadAt and
// WriteAt: its offset and length. A range that is empty, reaches past the
// namespace's end or whose bytes overflow an int64 is ErrBadRequest, so an
// accepted range always lies inside the namespace.
func (ns *Namespace) Span(lba, blocks uint64) (off, n int64, err error) {
	total, bs := ns.Info.Blocks, uint64(ns.Info.BlockSize)
	switch {
	case blocks == 0:
		return 0, 0, ns.bad("an empty range at block %d", lba)
	case lba >= total || blocks > total-lba:
		return 0, 0, ns.bad("%d blocks at block %d lie past the end (%d blocks)", blocks, lba, total)
	case bs == 0 || total > math.MaxInt64/bs:
		return 0, 0, ns.bad("a namespace of %d blocks of %d bytes has no byte offsets", total, bs)
	}
	return int64(lba * bs), int64(blocks * bs), nil
}

// ReadAt reads len(p) bytes at byte offset off, through pool buffers of
// up to MaxTransfer on I/O queue 0 (io.ReaderAt). off and len(p) must be
// whole blocks.
func (ns *Namespace) ReadAt(p []byte, off int64) (int, error) {
	return ns.copyAt(OpRead, p, off)
}

// WriteAt writes p at byte offset off (io.WriterAt), as ReadAt reads.
func (ns *Namespace) WriteAt(p []byte, off int64) (int, error) {
	return ns.copyAt(OpWrite, p, off)
}

// checkAt checks a ReadAt or WriteAt of n bytes at off: whole blocks,
// inside the namespace (compared without a sum that could wrap).
func (ns *Namespace) checkAt(op uint8, n int, off int64) error {
	bs := int64(ns.Info.BlockSize)
	if bs <= 0 || off < 0 || off%bs != 0 || int64(n)%bs != 0 {
		return ns.bad("%s of %d bytes at offset %d: offset and length must be whole %d-byte blocks", opName(op), n, off, bs)
	}
	if size := ns.Info.Bytes(); n > 0 && (uint64(off) > size || uint64(n) > size-uint64(off)) {
		return ns.bad("%s of %d bytes at offset %d: past the end (%d bytes)", opName(op), n, off, size)
	}
	return nil
}

func (ns *Namespace) copyAt(op uint8, p []byte, off int64) (int, error) {
	if err := ns.checkAt(op, len(p), off); err != nil || len(p) == 0 {
		return 0, err
	}
	bs := int64(ns.Info.BlockSize)
	chunk := min(len(p), ns.c.MaxTransfer())
	buf, err := ns.c.pool.get(chunk)
	if err != nil {
		return 0, err
	}
	defer ns.c.pool.put(buf)
	q := ns.c.io[0]
	done := 0
	for done < len(p) {
		n := min(chunk, len(p)-done)
		b := Buffer{b: buf.b[:n], iova: buf.iova}
		lba := uint64(off+int64(done)) / uint64(bs)
		if op == OpWrite {
			copy(b.b, p[done:done+n])
		}
		if err := ns.io(q, op, lba, b); err != nil {
			return done, err
		}
		if op == OpRead {
			copy(p[done:done+n], b.b)
		}
		done += n
	}
	return done, nil
}
