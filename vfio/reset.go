package vfio

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/uapi"
)

// Dependent is a device a PCI hot reset would affect.
type Dependent struct {
	Segment uint16
	Bus     uint8
	Devfn   uint8
	// GroupID is the device's IOMMU group (the group path).
	GroupID uint32
	// DevID, when DevIDSet (the cdev path, Linux 6.6), is its iommufd
	// device id: 0 when this process owns it some other way, and NotOwned
	// when it does not own it at all.
	DevID    uint32
	DevIDSet bool
}

// NotOwned is the device id the cdev path reports for an affected device
// this process does not own (VFIO_PCI_DEVID_NOT_OWNED).
const NotOwned = ^uint32(0)

// Address is the dependent's PCI address.
func (p Dependent) Address() string {
	return fmt.Sprintf("%04x:%02x:%02x.%d", p.Segment, p.Bus, p.Devfn>>3, p.Devfn&7)
}

// HotResetInfo is VFIO_DEVICE_GET_PCI_HOT_RESET_INFO: the devices a bus or
// slot reset of this device would reset too (itself included).
func (d *Device) HotResetInfo() ([]Dependent, error) {
	hdr := uint32(unsafe.Sizeof(uapi.VfioPciHotResetInfo{}))
	elem := uint32(unsafe.Sizeof(uapi.VfioPciDependentDevice{}))
	size := hdr + 8*elem
	for try := 0; try < 4; try++ {
		buf := kernel.HeapBytes(int(size))
		err := d.fd.Ioctl(kernel.Call{Op: "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO", Hints: hotResetHints}, func(fd int) error { return uapi.IoctlVfioDeviceGetPciHotResetInfo(fd, buf) })
		info, derr := uapi.Decode[uapi.VfioPciHotResetInfo](buf)
		if derr != nil {
			return nil, derr
		}
		if errors.Is(err, unix.ENOSPC) {
			size = hdr + info.Count*elem
			continue
		}
		if err != nil {
			return nil, err
		}
		if hdr+info.Count*elem > uint32(len(buf)) {
			return nil, kernel.Call{Op: "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO", Object: d.Name()}.Refuse(unix.EOVERFLOW, fmt.Sprintf("%d devices overflow the buffer", info.Count))
		}
		out := make([]Dependent, info.Count)
		for i := range out {
			p, err := uapi.Decode[uapi.VfioPciDependentDevice](buf[hdr+uint32(i)*elem:])
			if err != nil {
				return nil, err
			}
			out[i] = Dependent{Segment: p.Segment, Bus: p.Bus, Devfn: p.Devfn}
			if info.Flags&uapi.VFIO_PCI_HOT_RESET_FLAG_DEV_ID != 0 {
				out[i].DevID, out[i].DevIDSet = p.GroupId, true // devid shares the member
			} else {
				out[i].GroupID = p.GroupId
			}
		}
		return out, nil
	}
	return nil, kernel.Call{Op: "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO", Object: d.Name()}.Refuse(unix.EAGAIN, "the device count kept changing")
}

// hotResetHints explain the hot reset ioctls' errnos.
var hotResetHints = kernel.Hints{
	unix.ENODEV: kernel.Say("the device supports no bus or slot reset (it may sit on the root bus)"),
}

// HotReset is VFIO_DEVICE_PCI_HOT_RESET, a secondary bus (or slot) reset.
// On the group path pass the groups of every affected device, the proof
// that this process owns them; on the cdev path pass none (Linux 6.6): the
// iommufd the devices are bound to is the proof. Handle.HotReset works
// out which to pass.
func (d *Device) HotReset(groups ...*Group) error {
	hdr := int(unsafe.Sizeof(uapi.VfioPciHotReset{}))
	buf := kernel.HeapBytes(hdr + 4*len(groups))
	(*uapi.VfioPciHotReset)(unsafe.Pointer(&buf[0])).Count = uint32(len(groups))
	for i, g := range groups {
		fd, err := g.FD()
		if err != nil {
			return err
		}
		*(*int32)(unsafe.Pointer(&buf[hdr+4*i])) = int32(fd)
	}
	return d.fd.Ioctl(kernel.Call{Op: "VFIO_DEVICE_PCI_HOT_RESET", Args: fmt.Sprintf("%d groups", len(groups)), Hints: hotResetHints},
		func(fd int) error { return uapi.IoctlVfioDevicePciHotReset(fd, buf) })
}
