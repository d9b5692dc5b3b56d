package vfio

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/uapi"
)

// IRQIndex is a VFIO interrupt index: for vfio-pci one of the constants
// below.
type IRQIndex uint32

// IRQ indexes of vfio-pci.
const (
	IntxIRQ  IRQIndex = uapi.VFIO_PCI_INTX_IRQ_INDEX
	MSIIRQ   IRQIndex = uapi.VFIO_PCI_MSI_IRQ_INDEX
	MSIXIRQ  IRQIndex = uapi.VFIO_PCI_MSIX_IRQ_INDEX
	ErrorIRQ IRQIndex = uapi.VFIO_PCI_ERR_IRQ_INDEX // AER errors (PCIe devices)
	ReqIRQ   IRQIndex = uapi.VFIO_PCI_REQ_IRQ_INDEX
)

// IRQInfo is VFIO_DEVICE_GET_IRQ_INFO.
type IRQInfo struct {
	Index IRQIndex
	Count uint32
	Flags uint32 // uapi.VFIO_IRQ_INFO_*
}

func (i IRQInfo) Eventfd() bool    { return i.Flags&uapi.VFIO_IRQ_INFO_EVENTFD != 0 }
func (i IRQInfo) Maskable() bool   { return i.Flags&uapi.VFIO_IRQ_INFO_MASKABLE != 0 }
func (i IRQInfo) AutoMasked() bool { return i.Flags&uapi.VFIO_IRQ_INFO_AUTOMASKED != 0 }
func (i IRQInfo) NoResize() bool   { return i.Flags&uapi.VFIO_IRQ_INFO_NORESIZE != 0 }

// IRQInfo is VFIO_DEVICE_GET_IRQ_INFO for index i.
func (d *Device) IRQInfo(i IRQIndex) (IRQInfo, error) {
	if n := d.Info().NumIRQs; uint32(i) >= n {
		return IRQInfo{}, kernel.Call{Op: "VFIO_DEVICE_GET_IRQ_INFO", Object: d.Name(), Args: fmt.Sprintf("index %d", i)}.Refuse(unix.EINVAL, fmt.Sprintf("the device has IRQ indexes 0 to %d", int(n)-1))
	}
	info := uapi.VfioIrqInfo{Index: uint32(i)}
	if err := d.fd.Ioctl(kernel.Call{Op: "VFIO_DEVICE_GET_IRQ_INFO", Args: fmt.Sprintf("index %d", i)}, func(fd int) error { return uapi.IoctlVfioDeviceGetIrqInfo(fd, &info) }); err != nil {
		return IRQInfo{}, err
	}
	return IRQInfo{Index: IRQIndex(info.Index), Count: info.Count, Flags: info.Flags}, nil
}

// setIRQs issues VFIO_DEVICE_SET_IRQS with an optional data payload.
func (d *Device) setIRQs(flags uint32, index IRQIndex, start, count uint32, data []byte, what string) error {
	hdr := int(unsafe.Sizeof(uapi.VfioIrqSet{}))
	buf := kernel.HeapBytes(hdr + len(data))
	*(*uapi.VfioIrqSet)(unsafe.Pointer(&buf[0])) = uapi.VfioIrqSet{Flags: flags, Index: uint32(index), Start: start, Count: count}
	copy(buf[hdr:], data)
	return d.fd.Ioctl(kernel.Call{Op: "VFIO_DEVICE_SET_IRQS", Args: fmt.Sprintf("%s index %d start %d count %d", what, index, start, count)},
		func(fd int) error { return uapi.IoctlVfioDeviceSetIrqs(fd, buf) })
}

// SetTriggers makes vectors start.. of an IRQ index signal the eventfds
// (-1 leaves a vector without one). For MSI and MSI-X this enables the
// vectors on the device.
func (d *Device) SetTriggers(index IRQIndex, start uint32, fds []int) error {
	data := make([]byte, 4*len(fds))
	for i, fd := range fds {
		binary.NativeEndian.PutUint32(data[4*i:], uint32(int32(fd)))
	}
	return d.setIRQs(uapi.VFIO_IRQ_SET_DATA_EVENTFD|uapi.VFIO_IRQ_SET_ACTION_TRIGGER, index, start, uint32(len(fds)), data, "trigger eventfds")
}

// SetEventfds is SetTriggers with Eventfds: vectors start.. of an IRQ
// index signal evs (a nil entry leaves its vector without one).
func (d *Device) SetEventfds(index IRQIndex, start uint32, evs ...*Eventfd) error {
	fds := make([]int, len(evs))
	for i, e := range evs {
		fds[i] = -1
		if e != nil {
			fd, err := e.FD()
			if err != nil {
				return err
			}
			fds[i] = fd
		}
	}
	err := d.SetTriggers(index, start, fds)
	runtime.KeepAlive(evs) // the eventfds stay open until the kernel holds them
	return err
}

// DisableIRQ tears down every trigger of an index (and disables MSI/MSI-X).
func (d *Device) DisableIRQ(index IRQIndex) error {
	return d.setIRQs(uapi.VFIO_IRQ_SET_DATA_NONE|uapi.VFIO_IRQ_SET_ACTION_TRIGGER, index, 0, 0, nil, "disable")
}

// MaskIRQ masks vectors start..start+count-1 of an index.
func (d *Device) MaskIRQ(index IRQIndex, start, count uint32) error {
	return d.setIRQs(uapi.VFIO_IRQ_SET_DATA_NONE|uapi.VFIO_IRQ_SET_ACTION_MASK, index, start, count, nil, "mask")
}

// UnmaskIRQ unmasks vectors of an index (for INTx: after handling it).
func (d *Device) UnmaskIRQ(index IRQIndex, start, count uint32) error {
	return d.setIRQs(uapi.VFIO_IRQ_SET_DATA_NONE|uapi.VFIO_IRQ_SET_ACTION_UNMASK, index, start, count, nil, "unmask")
}

// TriggerIRQ fires vectors from software, as if the device had raised them.
func (d *Device) TriggerIRQ(index IRQIndex, start, count uint32) error {
	return d.setIRQs(uapi.VFIO_IRQ_SET_DATA_NONE|uapi.VFIO_IRQ_SET_ACTION_TRIGGER, index, start, count, nil, "trigger")
}

// Eventfd is an eventfd(2) counter, the kernel's way to signal an IRQ. It
// waits in Go's poller, so a Close from another goroutine ends a Wait in
// progress (with ErrClosed) instead of racing it.
type Eventfd struct {
	w *kernel.Waitable
}

// CreateEventfd creates a non-blocking, close-on-exec eventfd.
func CreateEventfd() (*Eventfd, error) {
	raw, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, kernel.Call{Op: "eventfd"}.Fail(err)
	}
	w, err := kernel.NewWaitable(raw, "eventfd")
	if err != nil {
		return nil, err
	}
	return &Eventfd{w: w}, nil
}

// FD is the raw descriptor to hand to SetTriggers (an Eventfd is an FDer).
// It stays owned by the Eventfd.
func (e *Eventfd) FD() (int, error) { return e.w.FD() }

// Wait blocks until the counter is non-zero or the timeout passes, then
// returns and clears the count (0 on timeout).
func (e *Eventfd) Wait(timeout time.Duration) (uint64, error) {
	var b [8]byte
	n, err := e.w.Read(b[:], time.Now().Add(timeout))
	if err != nil || n == 0 {
		return 0, err
	}
	return binary.NativeEndian.Uint64(b[:]), nil
}

// Signal adds n to the counter, as the kernel does when the IRQ fires.
func (e *Eventfd) Signal(n uint64) error {
	var b [8]byte
	binary.NativeEndian.PutUint64(b[:], n)
	return e.w.Write(b[:])
}

// Close closes the eventfd. A second Close fails with ErrClosed.
func (e *Eventfd) Close() error { return e.w.Close() }
