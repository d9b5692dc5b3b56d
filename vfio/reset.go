package vfio

import (
	"errors"
	"fmt"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/uapi"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// Dependent is a device a PCI hot reset would affect.
type Dependent struct {
	Segment uint16
	Bus     uint8
	Devfn   uint8
	// GroupID is the device's IOMMU group, or on the cdev path (DevIDSet)
	// its iommufd device id: 0 when this process owns it some other way,
	// and NotOwned when it does not own it at all.
	GroupID  uint32
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
		err := d.do("VFIO_DEVICE_GET_PCI_HOT_RESET_INFO", "", func(fd int) error { return uapi.IoctlVfioDeviceGetPciHotResetInfo(fd, buf) })
		info, derr := uapi.Decode[uapi.VfioPciHotResetInfo](buf)
		if derr != nil {
			return nil, derr
		}
		if errors.Is(err, unix.ENOSPC) {
			size = hdr + info.Count*elem
			continue
		}
		if err != nil {
			err.(*vfioerr.OpError).Hint = hotResetHint(err)
			return nil, err
		}
		if hdr+info.Count*elem > uint32(len(buf)) {
			return nil, &vfioerr.OpError{Op: "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO", Object: d.name, Err: unix.EOVERFLOW, Hint: fmt.Sprintf("%d devices overflow the buffer", info.Count)}
		}
		out := make([]Dependent, info.Count)
		for i := range out {
			p, err := uapi.Decode[uapi.VfioPciDependentDevice](buf[hdr+uint32(i)*elem:])
			if err != nil {
				return nil, err
			}
			out[i] = Dependent{Segment: p.Segment, Bus: p.Bus, Devfn: p.Devfn, GroupID: p.GroupId, DevIDSet: info.Flags&uapi.VFIO_PCI_HOT_RESET_FLAG_DEV_ID != 0}
		}
		return out, nil
	}
	return nil, &vfioerr.OpError{Op: "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO", Object: d.name, Err: unix.EAGAIN, Hint: "the device count kept changing"}
}

func hotResetHint(err error) string {
	if errors.Is(err, unix.ENODEV) {
		return "the device supports no bus or slot reset (it may sit on the root bus)"
	}
	return ""
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
	err := d.do("VFIO_DEVICE_PCI_HOT_RESET", fmt.Sprintf("%d groups", len(groups)), func(fd int) error { return uapi.IoctlVfioDevicePciHotReset(fd, buf) })
	var e *vfioerr.OpError
	if errors.As(err, &e) {
		e.Hint = hotResetHint(err)
	}
	return err
}

// HotReset resets the Handle's device by its bus or slot, with every
// device that reset affects. They must all be owned by this process: on the
// group path their groups must be among the Handle's (Options.Join opens
// more devices into it); on the cdev path they must be bound to its
// iommufd. If one is not, nothing is reset and the error names it.
func (h *Handle) HotReset() error {
	deps, err := h.Device.HotResetInfo()
	if err != nil {
		return err
	}
	var missing []string
	if h.Backend == Cdev {
		for _, dep := range deps {
			if dep.DevIDSet && dep.GroupID == NotOwned {
				missing = append(missing, dep.Address()+" (not bound to this iommufd)")
			}
		}
		if len(missing) == 0 {
			return h.Device.HotReset()
		}
	} else {
		h.space.mu.Lock()
		have := map[int]*Group{}
		for id, sg := range h.space.groups {
			have[id] = sg.g
		}
		h.space.mu.Unlock()
		var groups []*Group
		seen := map[int]bool{}
		for _, dep := range deps {
			id := int(dep.GroupID)
			if g := have[id]; g != nil && !seen[id] {
				groups, seen[id] = append(groups, g), true
			} else if g == nil {
				missing = append(missing, fmt.Sprintf("%s (IOMMU group %d, not open here)", dep.Address(), id))
			}
		}
		if len(missing) == 0 {
			return h.Device.HotReset(groups...)
		}
	}
	return &vfioerr.OpError{Op: "VFIO_DEVICE_PCI_HOT_RESET", Object: h.Device.Name(), Err: unix.EPERM,
		Hint: "the reset would also reset " + strings.Join(missing, ", ") + ", which this process does not own"}
}
