package vfio

import (
	"encoding/binary"
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/uapi"
)

// IRQ indexes of vfio-pci.
const (
	IntxIRQ = uapi.VFIO_PCI_INTX_IRQ_INDEX
	MSIIRQ  = uapi.VFIO_PCI_MSI_IRQ_INDEX
	MSIXIRQ = uapi.VFIO_PCI_MSIX_IRQ_INDEX
	ErrIRQ  = uapi.VFIO_PCI_ERR_IRQ_INDEX
	ReqIRQ  = uapi.VFIO_PCI_REQ_IRQ_INDEX
)

// IRQInfo is VFIO_DEVICE_GET_IRQ_INFO.
type IRQInfo struct {
	Index uint32
	Count uint32
	Flags uint32 // uapi.VFIO_IRQ_INFO_*
}

func (i IRQInfo) Eventfd() bool    { return i.Flags&uapi.VFIO_IRQ_INFO_EVENTFD != 0 }
func (i IRQInfo) Maskable() bool   { return i.Flags&uapi.VFIO_IRQ_INFO_MASKABLE != 0 }
func (i IRQInfo) AutoMasked() bool { return i.Flags&uapi.VFIO_IRQ_INFO_AUTOMASKED != 0 }
func (i IRQInfo) NoResize() bool   { return i.Flags&uapi.VFIO_IRQ_INFO_NORESIZE != 0 }

// IRQInfo is VFIO_DEVICE_GET_IRQ_INFO for index i.
func (d *Device) IRQInfo(i int) (IRQInfo, error) {
	if i < 0 || uint32(i) >= d.info.NumIRQs {
		return IRQInfo{}, &kernel.Error{Op: "VFIO_DEVICE_GET_IRQ_INFO", Object: d.name, Args: fmt.Sprintf("index %d", i), Err: unix.EINVAL,
			Hint: fmt.Sprintf("the device has IRQ indexes 0 to %d", int(d.info.NumIRQs)-1)}
	}
	info := uapi.VfioIrqInfo{Argsz: uint32(unsafe.Sizeof(uapi.VfioIrqInfo{})), Index: uint32(i)}
	if err := d.ioctl("VFIO_DEVICE_GET_IRQ_INFO", uapi.VFIO_DEVICE_GET_IRQ_INFO, unsafe.Pointer(&info), fmt.Sprintf("index %d", i)); err != nil {
		return IRQInfo{}, err
	}
	return IRQInfo{Index: info.Index, Count: info.Count, Flags: info.Flags}, nil
}

// setIRQs issues VFIO_DEVICE_SET_IRQS with an optional data payload.
func (d *Device) setIRQs(flags, index, start, count uint32, data []byte, what string) error {
	hdr := int(unsafe.Sizeof(uapi.VfioIrqSet{}))
	buf := make([]byte, hdr+len(data))
	s := (*uapi.VfioIrqSet)(unsafe.Pointer(&buf[0]))
	*s = uapi.VfioIrqSet{Argsz: uint32(len(buf)), Flags: flags, Index: index, Start: start, Count: count}
	copy(buf[hdr:], data)
	return d.ioctl("VFIO_DEVICE_SET_IRQS", uapi.VFIO_DEVICE_SET_IRQS, unsafe.Pointer(&buf[0]),
		fmt.Sprintf("%s index %d start %d count %d", what, index, start, count))
}

// SetTriggers makes vectors start.. of an IRQ index signal the eventfds
// (-1 leaves a vector without one). For MSI and MSI-X this enables the
// vectors on the device.
func (d *Device) SetTriggers(index, start uint32, fds []int) error {
	data := make([]byte, 4*len(fds))
	for i, fd := range fds {
		binary.NativeEndian.PutUint32(data[4*i:], uint32(int32(fd)))
	}
	return d.setIRQs(uapi.VFIO_IRQ_SET_DATA_EVENTFD|uapi.VFIO_IRQ_SET_ACTION_TRIGGER, index, start, uint32(len(fds)), data, "trigger eventfds")
}

// DisableIRQ tears down every trigger of an index (and disables MSI/MSI-X).
func (d *Device) DisableIRQ(index uint32) error {
	return d.setIRQs(uapi.VFIO_IRQ_SET_DATA_NONE|uapi.VFIO_IRQ_SET_ACTION_TRIGGER, index, 0, 0, nil, "disable")
}

// MaskIRQ masks vectors start..start+count-1 of an index.
func (d *Device) MaskIRQ(index, start, count uint32) error {
	return d.setIRQs(uapi.VFIO_IRQ_SET_DATA_NONE|uapi.VFIO_IRQ_SET_ACTION_MASK, index, start, count, nil, "mask")
}

// UnmaskIRQ unmasks vectors of an index (for INTx: after handling it).
func (d *Device) UnmaskIRQ(index, start, count uint32) error {
	return d.setIRQs(uapi.VFIO_IRQ_SET_DATA_NONE|uapi.VFIO_IRQ_SET_ACTION_UNMASK, index, start, count, nil, "unmask")
}

// TriggerIRQ fires vectors from software, as if the device had raised them.
func (d *Device) TriggerIRQ(index, start, count uint32) error {
	return d.setIRQs(uapi.VFIO_IRQ_SET_DATA_NONE|uapi.VFIO_IRQ_SET_ACTION_TRIGGER, index, start, count, nil, "trigger")
}

// Eventfd is an eventfd(2) counter, the kernel's way to signal an IRQ.
type Eventfd struct {
	fd *kernel.FD
}

// NewEventfd creates a non-blocking eventfd.
func NewEventfd() (*Eventfd, error) {
	raw, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, &kernel.Error{Op: "eventfd", Err: err}
	}
	fd, err := kernel.NewFD(raw, "eventfd")
	if err != nil {
		return nil, err
	}
	return &Eventfd{fd: fd}, nil
}

// FD is the raw descriptor to hand to SetTriggers.
func (e *Eventfd) FD() int {
	fd, err := e.fd.Int()
	if err != nil {
		return -1
	}
	return fd
}

// Wait blocks until the counter is non-zero or the timeout passes, then
// returns and clears the count (0 on timeout).
func (e *Eventfd) Wait(timeout time.Duration) (uint64, error) {
	fd, err := e.fd.Int()
	if err != nil {
		return 0, err
	}
	deadline := time.Now().Add(timeout)
	for {
		ms := int(time.Until(deadline) / time.Millisecond)
		if ms < 0 {
			ms = 0
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd, ms)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, &kernel.Error{Op: "poll", Object: "eventfd", Err: err}
		}
		if n == 0 {
			return 0, nil
		}
		var b [8]byte
		if _, err := unix.Read(fd, b[:]); err != nil {
			if err == unix.EAGAIN {
				continue
			}
			return 0, &kernel.Error{Op: "read", Object: "eventfd", Err: err}
		}
		return binary.NativeEndian.Uint64(b[:]), nil
	}
}

// Close closes the eventfd.
func (e *Eventfd) Close() error { return e.fd.Close() }
