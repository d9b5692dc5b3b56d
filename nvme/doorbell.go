package nvme

import (
	"sync/atomic"
	"unsafe"
)

// Shadow doorbells (Doorbell Buffer Config, NVMe 1.3, admin opcode 7Ch):
// the driver writes each I/O queue's doorbell value to a page in memory
// and writes the register only when the controller's EventIdx says it
// stopped looking. An emulated controller (QEMU's nvme since 7.1) reads
// the page while it works, so most submissions and completions cost no
// register write, which under emulation is a VM exit each. Linux's nvme
// driver does the same (nvme_dbbuf_set).
const (
	adminDoorbellBufferConfig = 0x7c
	oacsDoorbellBuffer        = 1 << 8
)

// doorbell is one queue doorbell: its register and, with shadow
// doorbells, its shadow and EventIdx words.
type doorbell struct {
	reg    uintptr
	shadow *uint32 // nil: always write the register
	event  *uint32
}

// ring publishes v, writing the register unless the controller will see
// the shadow by itself.
func (d *doorbell) ring(c *Controller, v uint16) {
	if d.shadow == nil {
		c.regs.Store32(d.reg, uint32(v))
		return
	}
	old := uint16(atomic.SwapUint32(d.shadow, uint32(v)))
	// The swap and the load are sequentially consistent: the controller
	// either sees the new shadow or has published the EventIdx we read.
	if ev := uint16(atomic.LoadUint32(d.event)); needEvent(ev, v, old) {
		c.regs.Store32(d.reg, uint32(v))
	}
}

// needEvent reports whether moving a doorbell from old to v passes the
// controller's EventIdx ev (the virtio rule NVMe's shadow doorbells use).
func needEvent(ev, v, old uint16) bool { return v-ev-1 < v-old }

// shadowDoorbells turns shadow doorbells on for the I/O queues when the
// controller offers them: two pooled pages (shadow values, EventIdx), the
// admin command, and each I/O queue pointed at its words. The admin queue
// keeps its registers (controllers differ on whether they shadow it).
func (c *Controller) shadowDoorbells() error {
	if c.ident.OACS&oacsDoorbellBuffer == 0 || c.opts.NoShadowDoorbells {
		return nil
	}
	if c.dbbuf.Len() == 0 {
		b, err := c.pool.get(2 * pageSize)
		if err != nil {
			return err
		}
		c.dbbuf = b
	}
	clear(c.dbbuf.Bytes())
	if _, err := c.admin.exec("doorbell buffer config", &Command{Opcode: adminDoorbellBufferConfig, PRP1: c.dbbuf.IOVA(), PRP2: c.dbbuf.IOVA() + pageSize}, 0, 0); err != nil {
		return err
	}
	word := func(page int, reg uintptr) *uint32 {
		return (*uint32)(unsafe.Pointer(&c.dbbuf.Bytes()[page*pageSize+int(reg-regDBS)]))
	}
	for _, q := range c.io {
		q.sqDB.shadow, q.sqDB.event = word(0, q.sqDB.reg), word(1, q.sqDB.reg)
		q.cqDB.shadow, q.cqDB.event = word(0, q.cqDB.reg), word(1, q.cqDB.reg)
	}
	c.shadowed = true
	return nil
}
