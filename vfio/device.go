package vfio

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/uapi"
)

// Device is an opened VFIO device, from a group (Group.Device) or from its
// char device (OpenCdev). Both give the same API.
type Device struct {
	fd   *kernel.FD
	name string
	info DeviceInfo
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
	d := &Device{fd: fd, name: name}
	if err := d.loadInfo(); err != nil {
		fd.Close()
		return nil, err
	}
	return d, nil
}

// NewDevice takes ownership of a pre-opened device fd (from a group's
// GET_DEVICE_FD, or an opened /dev/vfio/devices/vfioN already bound to an
// iommufd by a helper).
func NewDevice(fd int, name string) (*Device, error) { return newDevice(fd, name) }

func (d *Device) loadInfo() error {
	hdr := uint32(unsafe.Sizeof(uapi.VfioDeviceInfo{}))
	buf, err := growIoctl(hdr, func(b []byte) error {
		_, err := d.fd.Ioctl(uapi.VFIO_DEVICE_GET_INFO, uintptr(unsafe.Pointer(&b[0])))
		if err != nil {
			return &kernel.Error{Op: "VFIO_DEVICE_GET_INFO", Object: d.name, Err: err}
		}
		return nil
	})
	if err != nil {
		return err
	}
	raw := (*uapi.VfioDeviceInfo)(unsafe.Pointer(&buf[0]))
	d.info = DeviceInfo{Flags: raw.Flags, NumRegions: raw.NumRegions, NumIRQs: raw.NumIrqs}
	if raw.Flags&uapi.VFIO_DEVICE_FLAGS_CAPS != 0 {
		if d.info.Caps, err = uapi.Caps(buf, raw.CapOffset, hdr); err != nil {
			return fmt.Errorf("VFIO_DEVICE_GET_INFO on %s: %w", d.name, err)
		}
	}
	return nil
}

// Name is the device's name (its PCI address, or the cdev path).
func (d *Device) Name() string { return d.name }

// FD is the device's descriptor.
func (d *Device) FD() (int, error) { return d.fd.Int() }

// Info is what VFIO_DEVICE_GET_INFO reported at open.
func (d *Device) Info() DeviceInfo { return d.info }

// Close releases the device; IRQ triggers set on it are torn down.
func (d *Device) Close() error { return d.fd.Close() }

func (d *Device) ioctl(op string, req uint, arg unsafe.Pointer, args string) error {
	if _, err := d.fd.Ioctl(req, uintptr(arg)); err != nil {
		return &kernel.Error{Op: op, Object: d.name, Args: args, Err: err}
	}
	return nil
}

// Reset is VFIO_DEVICE_RESET (a function-level or equivalent reset).
func (d *Device) Reset() error {
	err := d.ioctl("VFIO_DEVICE_RESET", uapi.VFIO_DEVICE_RESET, nil, "")
	var ke *kernel.Error
	if errors.As(err, &ke) && errors.Is(err, unix.EINVAL) && !d.info.Resettable() {
		ke.Hint = "the device offers no reset method (see reset_method in sysfs); try a hot reset"
	}
	return err
}

// Dependent is a device a PCI hot reset would affect.
type Dependent struct {
	Segment  uint16
	Bus      uint8
	Devfn    uint8
	GroupID  uint32 // or, on the cdev path, the iommufd device id
	DevIDSet bool   // GroupID holds a devid (VFIO_PCI_HOT_RESET_FLAG_DEV_ID)
}

// Address is the dependent's PCI address.
func (p Dependent) Address() string {
	return fmt.Sprintf("%04x:%02x:%02x.%d", p.Segment, p.Bus, p.Devfn>>3, p.Devfn&7)
}

// HotResetInfo is VFIO_DEVICE_GET_PCI_HOT_RESET_INFO: the devices a bus or
// slot reset of this device would reset too.
func (d *Device) HotResetInfo() ([]Dependent, error) {
	hdr := uint32(unsafe.Sizeof(uapi.VfioPciHotResetInfo{}))
	elem := uint32(unsafe.Sizeof(uapi.VfioPciDependentDevice{}))
	size := hdr + 8*elem
	for try := 0; try < 4; try++ {
		buf := make([]byte, size)
		info := (*uapi.VfioPciHotResetInfo)(unsafe.Pointer(&buf[0]))
		info.Argsz = size
		_, err := d.fd.Ioctl(uapi.VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, uintptr(unsafe.Pointer(&buf[0])))
		if errors.Is(err, unix.ENOSPC) {
			size = hdr + info.Count*elem
			continue
		}
		if err != nil {
			return nil, &kernel.Error{Op: "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO", Object: d.name, Err: err, Hint: hotResetHint(err)}
		}
		if hdr+info.Count*elem > uint32(len(buf)) {
			return nil, fmt.Errorf("VFIO_DEVICE_GET_PCI_HOT_RESET_INFO on %s: %d devices overflow the buffer", d.name, info.Count)
		}
		out := make([]Dependent, info.Count)
		for i := range out {
			p := (*uapi.VfioPciDependentDevice)(unsafe.Pointer(&buf[hdr+uint32(i)*elem]))
			out[i] = Dependent{Segment: p.Segment, Bus: p.Bus, Devfn: p.Devfn, GroupID: p.GroupId, DevIDSet: info.Flags&uapi.VFIO_PCI_HOT_RESET_FLAG_DEV_ID != 0}
		}
		return out, nil
	}
	return nil, fmt.Errorf("VFIO_DEVICE_GET_PCI_HOT_RESET_INFO on %s: count kept changing", d.name)
}

func hotResetHint(err error) string {
	if errors.Is(err, unix.ENODEV) {
		return "the device supports no bus or slot reset (it may sit on the root bus)"
	}
	return ""
}

// HotReset is VFIO_DEVICE_PCI_HOT_RESET. On the group path pass the groups
// of every affected device (ownership proof); on the cdev path pass none:
// the iommufd proves ownership.
func (d *Device) HotReset(groups ...*Group) error {
	hdr := uint32(unsafe.Sizeof(uapi.VfioPciHotReset{}))
	buf := make([]byte, hdr+4*uint32(len(groups)))
	r := (*uapi.VfioPciHotReset)(unsafe.Pointer(&buf[0]))
	r.Argsz = uint32(len(buf))
	r.Count = uint32(len(groups))
	for i, g := range groups {
		fd, err := g.FD()
		if err != nil {
			return err
		}
		*(*int32)(unsafe.Pointer(&buf[hdr+4*uint32(i)])) = int32(fd)
	}
	if _, err := d.fd.Ioctl(uapi.VFIO_DEVICE_PCI_HOT_RESET, uintptr(unsafe.Pointer(&buf[0]))); err != nil {
		return &kernel.Error{Op: "VFIO_DEVICE_PCI_HOT_RESET", Object: d.name, Args: fmt.Sprintf("%d groups", len(groups)), Err: err, Hint: hotResetHint(err)}
	}
	return nil
}

// FeatureProbe is VFIO_DEVICE_FEATURE with VFIO_DEVICE_FEATURE_PROBE:
// whether the device supports GET and/or SET of a feature
// (uapi.VFIO_DEVICE_FEATURE_MIGRATION, ..._LOW_POWER_ENTRY ...). The kernel
// answers one access mode per probe, so both are asked.
func (d *Device) FeatureProbe(feature uint32) (get, set bool, err error) {
	probe := func(mode uint32) (bool, error) {
		f := uapi.VfioDeviceFeature{Argsz: uint32(unsafe.Sizeof(uapi.VfioDeviceFeature{})), Flags: uapi.VFIO_DEVICE_FEATURE_PROBE | mode | feature}
		_, err := d.fd.Ioctl(uapi.VFIO_DEVICE_FEATURE, uintptr(unsafe.Pointer(&f)))
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, unix.ENOTTY), errors.Is(err, unix.EINVAL), errors.Is(err, unix.EOPNOTSUPP):
			return false, nil
		}
		return false, &kernel.Error{Op: "VFIO_DEVICE_FEATURE", Object: d.name, Args: fmt.Sprintf("probe feature %d", feature), Err: err}
	}
	if get, err = probe(uapi.VFIO_DEVICE_FEATURE_GET); err != nil {
		return
	}
	set, err = probe(uapi.VFIO_DEVICE_FEATURE_SET)
	return
}
