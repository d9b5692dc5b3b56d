package edu

import (
	"crypto/rand"
	"fmt"
	"math/bits"
	"time"

	"github.com/vfioctl/vfioctl/dma"
	"github.com/vfioctl/vfioctl/vfio"
)

// IDs of the device.
const (
	Vendor = 0x1234
	Device = 0x11e8
)

// BAR0 registers.
const (
	RegID       = 0x00 // reads 0x010000ed
	RegLiveness = 0x04 // write x, read ^x
	RegIRQStat  = 0x24
	RegIRQRaise = 0x60
	RegIRQAck   = 0x64
	RegDMASrc   = 0x80
	RegDMADst   = 0x88
	RegDMACount = 0x90
	RegDMACmd   = 0x98

	Buffer  = 0x40000   // the device's internal 4 KiB DMA buffer
	DMAMask = 1<<28 - 1 // edu only drives 28 address bits
	// MaxDMA is the largest safe transfer: QEMU 7.2's edu aborts on a DMA
	// of exactly 4096 bytes (an off-by-one in its bounds check).
	MaxDMA = 4095

	CmdRun   = 1
	CmdToRAM = 2 // direction: edu buffer -> RAM (else RAM -> edu buffer)
	CmdIRQ   = 4 // raise an interrupt when done
	IDValue  = 0x010000ed
)

// Edu is an opened edu device with BAR0 mapped and bus mastering on.
type Edu struct {
	Dev *vfio.Device
	BAR *vfio.MMIO
	// BigEndian: the registers are big-endian, as QEMU's edu
	// (DEVICE_NATIVE_ENDIAN) is on a big-endian target such as
	// qemu-system-ppc64, whatever the guest's own byte order. Open tells
	// from the identification register; the accessors swap.
	BigEndian bool
}

// Open maps BAR0 of d, checks the identification register (in either
// byte order) and enables bus mastering.
func Open(d *vfio.Device) (*Edu, error) {
	r, err := d.Region(vfio.BAR0Region)
	if err != nil {
		return nil, err
	}
	bar, err := r.Map()
	if err != nil {
		return nil, err
	}
	id := bar.Load32(RegID)
	if id != IDValue && id != bits.ReverseBytes32(IDValue) {
		bar.Close()
		return nil, fmt.Errorf("edu: identification register %#x, want %#x: not an edu device", id, IDValue)
	}
	cfg, err := d.Config()
	if err == nil {
		err = cfg.EnableBusMaster()
	}
	if err != nil {
		bar.Close()
		return nil, err
	}
	return &Edu{Dev: d, BAR: bar, BigEndian: id != IDValue}, nil
}

// Load32 reads a 32-bit register.
func (e *Edu) Load32(off uintptr) uint32 { return e.order32(e.BAR.Load32(off)) }

// Store32 writes a 32-bit register.
func (e *Edu) Store32(off uintptr, v uint32) { e.BAR.Store32(off, e.order32(v)) }

// Load64 reads a 64-bit register.
func (e *Edu) Load64(off uintptr) uint64 { return e.order64(e.BAR.Load64(off)) }

// Store64 writes a 64-bit register.
func (e *Edu) Store64(off uintptr, v uint64) { e.BAR.Store64(off, e.order64(v)) }

// order32 and order64 turn a register value between the device's byte
// order (little endian) and the CPU's: a swap is its own inverse.
func (e *Edu) order32(v uint32) uint32 {
	if e.BigEndian {
		return bits.ReverseBytes32(v)
	}
	return v
}

func (e *Edu) order64(v uint64) uint64 {
	if e.BigEndian {
		return bits.ReverseBytes64(v)
	}
	return v
}

// Close unmaps BAR0 (the device stays open).
func (e *Edu) Close() error { return e.BAR.Close() }

// DMA runs one transfer and waits for it. edu completes on a 100 ms timer
// of QEMU's virtual clock: poll with sleeps, up to a deadline.
func (e *Edu) DMA(src, dst, count, cmd uint64) error {
	if count > MaxDMA {
		return fmt.Errorf("edu: DMA of %d bytes: at most %d", count, MaxDMA)
	}
	e.Store64(RegDMASrc, src)
	e.Store64(RegDMADst, dst)
	e.Store64(RegDMACount, count)
	e.Store64(RegDMACmd, cmd|CmdRun)
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if e.Load64(RegDMACmd)&CmdRun == 0 {
			return nil
		}
	}
	return fmt.Errorf("edu: DMA src=%#x dst=%#x count=%d did not complete in 5 s", src, dst, count)
}

// Roundtrip copies n bytes RAM -> edu -> RAM through the IOMMU: from the
// first page of buf (mapped at iova) into the device and back into its
// second page, and reports whether the data came back intact.
func (e *Edu) Roundtrip(buf *dma.Buffer, iova uint64, n int) error {
	if buf.Len() < 8192 || n > MaxDMA || n > 4096 {
		return fmt.Errorf("edu: roundtrip needs a 2-page buffer and at most %d bytes", MaxDMA)
	}
	// Fresh random bytes each call: edu's buffer keeps what an earlier
	// round trip left there, so a fixed pattern would come back even if
	// this call's RAM-to-device DMA never happened.
	src, dst := buf.Bytes()[:n], buf.Bytes()[4096:4096+n]
	rand.Read(src)
	clear(dst)
	if err := e.DMA(iova, Buffer, uint64(n), 0); err != nil {
		return err
	}
	if err := e.DMA(Buffer, iova+4096, uint64(n), CmdToRAM); err != nil {
		return err
	}
	for i := range dst {
		if dst[i] != src[i] {
			return fmt.Errorf("edu: byte %d came back as %#x, sent %#x", i, dst[i], src[i])
		}
	}
	return nil
}
