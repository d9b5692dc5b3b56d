package nvme

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vfioctl/vfioctl/vfio"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// Options configure New. The zero value (or nil) is one polled I/O queue
// pair as deep as the controller allows up to 256, an 8 MiB pool and a 5 s
// command timeout.
type Options struct {
	Queues     int           // I/O queue pairs (default 1)
	QueueDepth int           // entries per I/O submission queue (default min(CAP.MQES, 256)); its completion queue has twice as many, at most CAP.MQES
	Interrupts bool          // complete through MSI-X vectors on eventfds instead of polling
	PoolSize   int           // bytes of DMA memory for queues, PRP lists and buffers (default 8 MiB)
	Timeout    time.Duration // per command (default 5 s)
	// NoShadowDoorbells writes every doorbell register even where the
	// controller offers shadow doorbells (Doorbell Buffer Config). They
	// pay off with two or more commands in flight, where a submission
	// often finds the controller still reading the queue and needs no
	// register write; with one at a time the controller has always
	// caught up, so each command still costs the write, and the shadow
	// and EventIdx words cost QEMU's nvme four more memory accesses
	// (one QEMU 7.2 boot, polled, pinned: off is 1.17x the IOPS at
	// depth 1, and 0.83x to 0.96x from depth 2 to 16). vfioctl nvme
	// bench turns them off at --depth 1.
	NoShadowDoorbells bool
	// PollBeforeSleep, with Interrupts, makes Poll spin on the completion
	// queue this long before it sleeps on the vector (hybrid completion):
	// a completion that comes soon costs no interrupt and no wakeup, and an
	// idle queue costs no core. 0: sleep at once.
	PollBeforeSleep time.Duration
}

// Controller is an NVMe controller driven from user space.
type Controller struct {
	h    *vfio.Handle
	dev  *vfio.Device
	regs *vfio.MMIO
	cap  capRegs
	pool *pool
	opts Options

	admin    *QueuePair
	io       []*QueuePair
	evs      []*vfio.Eventfd // MSI-X vector i: queue i (0: admin)
	ident    *IdentifyController
	dbbuf    Buffer // shadow doorbells, then EventIdx (one page each)
	shadowed bool

	fatal  atomic.Bool // CSTS.CFS seen, or the admin queue lost: Reset needed
	resets sync.Mutex  // Reset and Close exclude each other
	closed atomic.Bool
}

const adminDepth = 32

// New takes over the NVMe controller of h (opened with vfio.Open on any
// backend that has a Mapper): bus mastering on, controller reset, admin
// queue, Identify Controller, opts.Queues I/O queue pairs.
func New(h *vfio.Handle, opts *Options) (*Controller, error) {
	if h.Mapper() == nil {
		return nil, fmt.Errorf("nvme: %s has no IOMMU mapper (no-IOMMU mode is not supported)", h.Device().Name())
	}
	o := Options{Queues: 1, PoolSize: 8 << 20, Timeout: 5 * time.Second}
	if opts != nil {
		if opts.Queues > 0 {
			o.Queues = opts.Queues
		}
		if opts.PoolSize > 0 {
			o.PoolSize = opts.PoolSize
		}
		if opts.Timeout > 0 {
			o.Timeout = opts.Timeout
		}
		o.QueueDepth, o.Interrupts, o.NoShadowDoorbells, o.PollBeforeSleep = opts.QueueDepth, opts.Interrupts, opts.NoShadowDoorbells, opts.PollBeforeSleep
	}
	c := &Controller{h: h, dev: h.Device(), opts: o}
	c.fatal.Store(true) // until start is done
	cfg, err := h.Device().Config()
	if err != nil {
		return nil, err
	}
	if err := cfg.EnableBusMaster(); err != nil {
		return nil, err
	}
	if err := c.mapRegs(); err != nil {
		return nil, err
	}
	c.cap = decodeCAP(c.regs.Load64(regCAP))
	if c.cap.css&1 == 0 || c.cap.mpsMin > pageSize {
		c.regs.Close()
		return nil, fmt.Errorf("nvme: %s: CAP %#x: no NVM command set or 4 KiB pages", h.Device().Name(), c.regs.Load64(regCAP))
	}
	depth := o.QueueDepth
	if depth <= 0 {
		depth = min(c.cap.mqes, 256)
	}
	if depth < 2 || depth > c.cap.mqes || depth > 4096 {
		c.regs.Close()
		return nil, fmt.Errorf("nvme: queue depth %d: the controller takes 2 to %d entries", depth, c.cap.mqes)
	}
	c.opts.QueueDepth = depth
	if last := c.cap.cqDoorbell(o.Queues); last+4 > uintptr(c.regs.Len()) {
		c.regs.Close()
		return nil, fmt.Errorf("nvme: %d queues need doorbells up to %#x; BAR0 maps %#x bytes", o.Queues, last+4, c.regs.Len())
	}
	if c.pool, err = newPool(h.Mapper(), o.PoolSize); err != nil {
		c.regs.Close()
		return nil, err
	}
	if err := c.build(); err != nil {
		c.release()
		return nil, err
	}
	return c, nil
}

// mapRegs maps BAR0's registers and doorbells (the part before the MSI-X
// table, where vfio-pci does not let that be mapped).
func (c *Controller) mapRegs() error {
	bar, err := c.dev.Region(vfio.BAR0Region)
	if err != nil {
		return err
	}
	size := bar.Size
	for _, a := range bar.SparseAreas {
		if a.Offset == 0 {
			size = a.Size
		}
	}
	if len(bar.SparseAreas) > 0 && size == bar.Size {
		return fmt.Errorf("nvme: %s: BAR0 has no mmap-able area at offset 0", c.dev.Name())
	}
	c.regs, err = bar.MapRange(0, size)
	return err
}

// build creates the queue pairs and brings the controller up from disabled.
func (c *Controller) build() error {
	if c.opts.Interrupts {
		if err := c.wireInterrupts(); err != nil {
			return err
		}
	}
	// The admin queue moves at most a page per command: no PRP lists.
	var err error
	if c.admin, err = newQueuePair(c, 0, adminDepth, 2*pageSize, c.eventfd(0)); err != nil {
		return err
	}
	return c.start()
}

func (c *Controller) eventfd(i int) *vfio.Eventfd {
	if i < len(c.evs) {
		return c.evs[i]
	}
	return nil
}

// wireInterrupts gives each queue an MSI-X vector on its own eventfd.
func (c *Controller) wireInterrupts() error {
	info, err := c.dev.IRQInfo(vfio.MSIXIRQ)
	if err != nil {
		return err
	}
	if int(info.Count) < c.opts.Queues+1 {
		return fmt.Errorf("nvme: %s has %d MSI-X vectors; %d queues with interrupts need %d", c.dev.Name(), info.Count, c.opts.Queues, c.opts.Queues+1)
	}
	for i := 0; i <= c.opts.Queues; i++ {
		ev, err := vfio.CreateEventfd()
		if err != nil {
			return err
		}
		c.evs = append(c.evs, ev)
	}
	return c.dev.SetEventfds(vfio.MSIXIRQ, 0, c.evs...)
}

// start disables the controller, programs the admin queue, enables it and
// creates the I/O queues. The rings must be empty (reset).
func (c *Controller) start() error {
	if err := c.disable(); err != nil {
		return err
	}
	a := c.admin
	c.regs.Store32(regAQA, uint32(a.depth-1)<<16|uint32(a.depth-1))
	c.regs.Store64(regASQ, a.sqIOVA)
	c.regs.Store64(regACQ, a.cqIOVA)
	c.regs.Store32(regCC, ccEnable|ccCSSNVM|ccMPS4K|ccAMSRR|ccIOSQES|ccIOCQES)
	if err := c.waitReady(true); err != nil {
		return err
	}
	ident, err := c.identifyController()
	if err != nil {
		return err
	}
	c.ident = ident
	if c.io == nil { // first start: size the PRP lists by MDTS
		for i := 1; i <= c.opts.Queues; i++ {
			q, err := newQueuePair(c, i, c.opts.QueueDepth, c.MaxTransfer(), c.eventfd(i))
			if err != nil {
				return err
			}
			c.io = append(c.io, q)
		}
	}
	if err := c.shadowDoorbells(); err != nil {
		return err
	}
	n := uint32(len(c.io) - 1)
	dw0, err := c.admin.exec("set features (number of queues)", &Command{Opcode: adminSetFeatures, CDW10: featureNumQueues, CDW11: n<<16 | n}, 0, 0)
	if err != nil {
		return err
	}
	if got := min(int(dw0&0xffff), int(dw0>>16)) + 1; got < len(c.io) {
		return fmt.Errorf("nvme: %s grants %d I/O queue pairs, %d asked", c.dev.Name(), got, len(c.io))
	}
	for _, q := range c.io {
		if err := c.createQueues(q); err != nil {
			return err
		}
	}
	c.fatal.Store(false)
	return nil
}

func (c *Controller) createQueues(q *QueuePair) error {
	cq := uint32(1) // physically contiguous
	if q.evfd >= 0 {
		cq |= 1<<1 | uint32(q.id)<<16 // interrupts on, vector q.id
	}
	// PRP1 of a physically contiguous queue is its base address.
	size := uint32(q.cqDepth-1)<<16 | uint32(q.id)
	if _, err := c.admin.exec(fmt.Sprintf("create I/O completion queue %d", q.id), &Command{Opcode: adminCreateCQ, PRP1: q.cqIOVA, CDW10: size, CDW11: cq}, 0, 0); err != nil {
		return err
	}
	size = uint32(q.depth-1)<<16 | uint32(q.id)
	_, err := c.admin.exec(fmt.Sprintf("create I/O submission queue %d", q.id), &Command{Opcode: adminCreateSQ, PRP1: q.sqIOVA, CDW10: size, CDW11: 1 | uint32(q.id)<<16}, 0, 0)
	return err
}

// disable clears CC.EN and waits for CSTS.RDY to drop (CAP.TO).
func (c *Controller) disable() error {
	cc := c.regs.Load32(regCC)
	if cc&ccEnable == 0 && c.regs.Load32(regCSTS)&cstsRDY == 0 {
		return nil
	}
	c.regs.Store32(regCC, cc&^ccEnable)
	return c.waitReady(false)
}

// waitReady waits until CSTS.RDY is rdy, at most CAP.TO.
func (c *Controller) waitReady(rdy bool) error {
	deadline := time.Now().Add(c.cap.timeout + 100*time.Millisecond)
	for {
		csts := c.regs.Load32(regCSTS)
		if csts == 0xffffffff {
			return fmt.Errorf("nvme: %s: CSTS reads all ones: the device is gone or its memory decoding is off", c.dev.Name())
		}
		if (csts&cstsRDY != 0) == rdy {
			return nil
		}
		if rdy && csts&cstsCFS != 0 {
			return fmt.Errorf("nvme: %s: enabling: %w", c.dev.Name(), ErrFatal)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nvme: %s: CSTS.RDY did not become %v within CAP.TO (%s); CSTS %#x", c.dev.Name(), rdy, c.cap.timeout, csts)
		}
		time.Sleep(time.Millisecond)
	}
}

// usable is nil unless the controller needs Reset or is closed (the admin
// queue stays usable: start and Reset need it).
func (c *Controller) usable(q *QueuePair) error {
	if c.closed.Load() {
		return vfioerr.ErrClosed
	}
	if q != c.admin && c.fatal.Load() {
		return ErrFatal
	}
	return nil
}

// expired handles command cid of q past its deadline (q.mu held): a fatal
// controller says so; otherwise the command is aborted and its id kept out
// of use until Reset.
func (c *Controller) expired(q *QueuePair, cid uint16) error {
	if c.regs.Load32(regCSTS)&cstsCFS != 0 {
		c.fatal.Store(true)
		return ErrFatal
	}
	q.slots[cid].lost = true // not reported twice; its completion frees it
	q.lost++
	if q == c.admin {
		c.fatal.Store(true)
		return fmt.Errorf("%w after %s on the admin queue: Reset the controller", ErrTimeout, c.opts.Timeout)
	}
	dw0, err := c.admin.exec(fmt.Sprintf("abort command %d of queue %d", cid, q.id), &Command{Opcode: adminAbort, CDW10: uint32(q.id) | uint32(cid)<<16}, 0, 0)
	switch {
	case errors.Is(err, ErrFatal):
		return ErrFatal
	case err != nil:
		return fmt.Errorf("%w after %s; the abort failed too (%v): Reset the controller", ErrTimeout, c.opts.Timeout, err)
	case dw0&1 == 0:
		return fmt.Errorf("%w after %s; aborted", ErrTimeout, c.opts.Timeout)
	}
	return fmt.Errorf("%w after %s; the controller did not abort it: its id stays in use until Reset", ErrTimeout, c.opts.Timeout)
}

// Reset disables and re-enables the controller and recreates every queue:
// outstanding commands are lost. It is how a controller that reported a
// fatal status, or lost a command, becomes usable again.
func (c *Controller) Reset() error {
	c.resets.Lock()
	defer c.resets.Unlock()
	if c.closed.Load() {
		return vfioerr.ErrClosed
	}
	// Commands on the I/O queues fail with ErrFatal until start is done;
	// ones in flight are lost.
	c.fatal.Store(true)
	qs := append([]*QueuePair{c.admin}, c.io...)
	for _, q := range qs {
		q.mu.Lock()
	}
	if cfg, err := c.dev.Config(); err == nil {
		_ = cfg.EnableBusMaster() // a function reset, or the user, may have turned it off
	}
	c.regs.Store32(regCC, 0)
	err := c.waitReady(false)
	for _, q := range qs {
		if err == nil {
			q.reset()
		}
		q.mu.Unlock()
	}
	if err != nil {
		return err
	}
	return c.start()
}

// ShadowDoorbells reports whether the I/O queues use shadow doorbells.
func (c *Controller) ShadowDoorbells() bool { return c.shadowed }

// Handle is the vfio Handle the controller was made from.
func (c *Controller) Handle() *vfio.Handle { return c.h }

// Identify is what Identify Controller reported when the controller was
// last enabled.
func (c *Controller) Identify() *IdentifyController { return c.ident }

// Queue is I/O queue pair i (0 to Options.Queues-1).
func (c *Controller) Queue(i int) *QueuePair { return c.io[i] }

// Queues is the number of I/O queue pairs.
func (c *Controller) Queues() int { return len(c.io) }

// TakeBuffer takes size bytes (rounded up to 4 KiB) of DMA memory from the
// pool, zeroed; ReturnBuffer returns them.
func (c *Controller) TakeBuffer(size int) (Buffer, error) { return c.pool.get(size) }

// ReturnBuffer returns a buffer from TakeBuffer to the pool.
func (c *Controller) ReturnBuffer(b Buffer) error { return c.pool.put(b) }

// MaxTransfer is the largest transfer of one command, in bytes (MDTS, and
// one PRP list page).
func (c *Controller) MaxTransfer() int {
	max := (prpsPerPage + 1) * pageSize
	if m := c.ident.MDTS; m != 0 && c.cap.mpsMin<<m < max {
		max = c.cap.mpsMin << m
	}
	return max
}

// Close shuts the controller down (CC.SHN, then disabled), turns its
// interrupts off and unmaps and frees the pool and registers.
func (c *Controller) Close() error {
	c.resets.Lock()
	defer c.resets.Unlock()
	if c.closed.Swap(true) {
		return vfioerr.ErrClosed
	}
	for _, ev := range c.evs {
		_ = ev.Signal(1) // end the waits in progress: they see closed
	}
	for _, q := range append([]*QueuePair{c.admin}, c.io...) {
		q.mu.Lock()
		defer q.mu.Unlock()
	}
	c.regs.Store32(regCC, c.regs.Load32(regCC)|ccSHNNorm)
	deadline := time.Now().Add(c.cap.timeout)
	for c.regs.Load32(regCSTS)&cstsSHSTMask != cstsSHSTDone && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	err := c.disable()
	if rerr := c.release(); err == nil {
		err = rerr
	}
	return err
}

// release frees what New set up, in reverse.
func (c *Controller) release() error {
	var err error
	keep := func(e error) {
		if err == nil {
			err = e
		}
	}
	if len(c.evs) > 0 {
		keep(c.dev.DisableIRQ(vfio.MSIXIRQ))
		for _, ev := range c.evs {
			keep(ev.Close())
		}
	}
	if c.pool != nil {
		keep(c.pool.close())
	}
	keep(c.regs.Close())
	return err
}
