package vfio

import (
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/uapi"
)

// Device is an opened VFIO device, from a group (Group.Device) or from its
// char device (OpenCdev). Both give the same API. Its methods are safe for
// concurrent use; after Close every one fails with ErrClosed.
type Device struct {
	fd   *kernel.FD
	info atomic.Pointer[DeviceInfo] // nil until GET_INFO (a cdev answers it only once bound)
}

// DeviceInfo is VFIO_DEVICE_GET_INFO, decoded.
type DeviceInfo struct {
	Flags      uint32 // uapi.VFIO_DEVICE_FLAGS_*
	NumRegions uint32
	NumIRQs    uint32
	Caps       []uapi.Cap
}

// PCI reports a vfio-pci device.
func (i DeviceInfo) PCI() bool { return i.Flags&uapi.VFIO_DEVICE_FLAGS_PCI != 0 }

// Resettable reports whether VFIO_DEVICE_RESET is offered.
func (i DeviceInfo) Resettable() bool { return i.Flags&uapi.VFIO_DEVICE_FLAGS_RESET != 0 }

func newDevice(raw int, name string) (*Device, error) {
	fd, err := kernel.NewFD(raw, name)
	if err != nil {
		return nil, err
	}
	d := &Device{fd: fd}
	if err := d.loadInfo(); err != nil {
		fd.Close()
		return nil, err
	}
	return d, nil
}

// NewDevice takes ownership of a pre-opened device fd: one from a group's
// GET_DEVICE_FD, or a /dev/vfio/devices/vfioN already bound to an iommufd
// by a helper. name is what errors call it (its PCI address): the fd
// cannot tell.
func NewDevice(fd int, name string) (*Device, error) { return newDevice(fd, name) }

func (d *Device) loadInfo() error {
	hdr := uint32(unsafe.Sizeof(uapi.VfioDeviceInfo{}))
	buf, err := growIoctl(hdr, func(b []byte) error {
		return d.fd.Ioctl(kernel.Call{Op: "VFIO_DEVICE_GET_INFO"}, func(fd int) error { return uapi.IoctlVfioDeviceGetInfo(fd, b) })
	})
	if err != nil {
		return err
	}
	raw, err := uapi.Decode[uapi.VfioDeviceInfo](buf)
	if err != nil {
		return err
	}
	info := &DeviceInfo{Flags: raw.Flags, NumRegions: raw.NumRegions, NumIRQs: raw.NumIrqs}
	if raw.Flags&uapi.VFIO_DEVICE_FLAGS_CAPS != 0 {
		if info.Caps, err = uapi.Caps(buf, raw.CapOffset, hdr); err != nil {
			return kernel.Call{Op: "VFIO_DEVICE_GET_INFO", Object: d.Name()}.Fail(err)
		}
	}
	d.info.Store(info)
	return nil
}

// Name is the device's name (its PCI address, or the cdev path).
func (d *Device) Name() string { return d.fd.Name() }

// FD is the device's descriptor. It stays owned by the device.
func (d *Device) FD() (int, error) { return d.fd.Int() }

// Dup returns a new descriptor for the device, owned by the caller.
func (d *Device) Dup() (int, error) { return d.fd.Dup() }

// Info is what VFIO_DEVICE_GET_INFO reported at open (for a cdev, at
// BindIOMMUFD; zero before).
func (d *Device) Info() DeviceInfo {
	if i := d.info.Load(); i != nil {
		return *i
	}
	return DeviceInfo{}
}

// Close releases the device; IRQ triggers set on it are torn down. A
// second Close fails with ErrClosed.
func (d *Device) Close() error { return d.fd.Close() }

// Reset is VFIO_DEVICE_RESET (a function-level or equivalent reset).
func (d *Device) Reset() error {
	return d.fd.Ioctl(kernel.Call{Op: "VFIO_DEVICE_RESET", Hints: kernel.Hints{unix.EINVAL: func() string {
		if d.Info().Resettable() {
			return ""
		}
		return "the device offers no reset method (see reset_method in sysfs)"
	}}}, func(fd int) error {
		_, err := uapi.IoctlVfioDeviceReset(fd)
		return err
	})
}
