package ioasid

import (
	"fmt"
	"time"

	"github.com/vfioctl/vfioctl/uapi"
)

// The vIOMMU family (Linux 6.13+) exposes a slice of a physical IOMMU to a
// VM. These calls exist on every kernel; where the running one lacks them
// they return an error matching ErrNotSupported that names the version.
// Every object here keeps the one Close contract: the first Close destroys
// it, later uses and Closes fail with ErrClosed.

// VIOMMU is a virtual IOMMU instance (IOMMU_VIOMMU_ALLOC, Linux 6.13).
type VIOMMU struct {
	object
}

// AllocVIOMMU is IOMMU_VIOMMU_ALLOC of type typ (uapi.IOMMU_VIOMMU_TYPE_*)
// for device devID on a nesting-parent HWPT.
func (f *FD) AllocVIOMMU(devID uint32, parent *HWPT, typ uint32) (*VIOMMU, error) {
	var a uapi.IommuViommuAlloc
	err := parent.use("IOMMU_VIOMMU_ALLOC", func(hwpt uint32) error {
		a = uapi.IommuViommuAlloc{Type: typ, DevId: devID, HwptId: hwpt}
		return f.fd.Ioctl(call("IOMMU_VIOMMU_ALLOC", uapi.IOMMU_VIOMMU_ALLOC, fmt.Sprintf("dev %d hwpt %d type %d", devID, hwpt, typ)), func(fd int) error { return uapi.IoctlIommuViommuAlloc(fd, &a) })
	})
	if err != nil {
		return nil, err
	}
	return &VIOMMU{object: object{fd: f, kind: "viommu", id: a.OutViommuId}}, nil
}

// VIOMMUByID wraps an existing vIOMMU of f by id (one allocated by another
// owner of the iommufd). It is borrowed: Close does not destroy it.
func (f *FD) VIOMMUByID(id uint32) (*VIOMMU, error) {
	if _, err := f.fd.Int(); err != nil {
		return nil, err
	}
	return &VIOMMU{object: object{fd: f, kind: "viommu", id: id, borrowed: true}}, nil
}

// ID is the vIOMMU's object id.
func (v *VIOMMU) ID() uint32 { return v.id }

// Close destroys the vIOMMU (destroy its vDevices and queues first).
func (v *VIOMMU) Close() error { return v.close(nil) }

// VDevice is a device's virtual instance on a vIOMMU, with the ID the
// guest knows it by (IOMMU_VDEVICE_ALLOC, Linux 6.13).
type VDevice struct {
	object
}

// AllocVDevice is IOMMU_VDEVICE_ALLOC: device devID gets the guest-visible
// virtID (e.g. a virtual stream ID) on v.
func (v *VIOMMU) AllocVDevice(devID uint32, virtID uint64) (*VDevice, error) {
	var a uapi.IommuVdeviceAlloc
	err := v.use("IOMMU_VDEVICE_ALLOC", func(id uint32) error {
		a = uapi.IommuVdeviceAlloc{ViommuId: id, DevId: devID, VirtId: virtID}
		return v.fd.fd.Ioctl(call("IOMMU_VDEVICE_ALLOC", uapi.IOMMU_VDEVICE_ALLOC, fmt.Sprintf("viommu %d dev %d virt %#x", id, devID, virtID)), func(fd int) error { return uapi.IoctlIommuVdeviceAlloc(fd, &a) })
	})
	if err != nil {
		return nil, err
	}
	return &VDevice{object: object{fd: v.fd, kind: "vdevice", id: a.OutVdeviceId}}, nil
}

// ID is the vDevice's object id.
func (d *VDevice) ID() uint32 { return d.id }

// Close destroys the vDevice.
func (d *VDevice) Close() error { return d.close(nil) }

// VEventQueue delivers a vIOMMU's events to user space (IOMMU_VEVENTQ_ALLOC,
// Linux 6.15). Close ends a Read in progress.
type VEventQueue struct {
	object
	q *queue
}

// AllocEventQueue is IOMMU_VEVENTQ_ALLOC of type typ holding up to depth events.
func (v *VIOMMU) AllocEventQueue(typ, depth uint32) (*VEventQueue, error) {
	var a uapi.IommuVeventqAlloc
	err := v.use("IOMMU_VEVENTQ_ALLOC", func(id uint32) error {
		a = uapi.IommuVeventqAlloc{ViommuId: id, Type: typ, VeventqDepth: depth}
		return v.fd.fd.Ioctl(call("IOMMU_VEVENTQ_ALLOC", uapi.IOMMU_VEVENTQ_ALLOC, fmt.Sprintf("viommu %d type %d", id, typ)), func(fd int) error { return uapi.IoctlIommuVeventqAlloc(fd, &a) })
	})
	if err != nil {
		return nil, err
	}
	q, err := newQueue(int(int32(a.OutVeventqFd)), fmt.Sprintf("iommufd veventq %d", a.OutVeventqId))
	if err != nil {
		v.fd.Destroy(a.OutVeventqId)
		return nil, err
	}
	return &VEventQueue{object: object{fd: v.fd, kind: "veventq", id: a.OutVeventqId}, q: q}, nil
}

// ID is the queue's object id.
func (e *VEventQueue) ID() uint32 { return e.id }

// Read reads raw event records (a header and its data each, as the vIOMMU
// type defines them) into buf, waiting at most timeout (0: until one
// arrives or the queue is closed). It returns the bytes read, 0 on timeout.
func (e *VEventQueue) Read(buf []byte, timeout time.Duration) (int, error) {
	return e.q.read(buf, timeout)
}

// Close closes the queue's fd and destroys it.
func (e *VEventQueue) Close() error { return e.close(e.q.close) }

// HWQueue is a vIOMMU hardware queue handed to user space
// (IOMMU_HW_QUEUE_ALLOC, Linux 6.17).
type HWQueue struct {
	object
}

// AllocHWQueue is IOMMU_HW_QUEUE_ALLOC: queue index of type typ, backed by
// [iova, iova+length) of the nesting parent.
func (v *VIOMMU) AllocHWQueue(typ, index uint32, iova, length uint64) (*HWQueue, error) {
	var a uapi.IommuHwQueueAlloc
	err := v.use("IOMMU_HW_QUEUE_ALLOC", func(id uint32) error {
		a = uapi.IommuHwQueueAlloc{ViommuId: id, Type: typ, Index: index, NestingParentIova: iova, Length: length}
		return v.fd.fd.Ioctl(call("IOMMU_HW_QUEUE_ALLOC", uapi.IOMMU_HW_QUEUE_ALLOC, fmt.Sprintf("viommu %d type %d index %d", id, typ, index)), func(fd int) error { return uapi.IoctlIommuHwQueueAlloc(fd, &a) })
	})
	if err != nil {
		return nil, err
	}
	return &HWQueue{object: object{fd: v.fd, kind: "hw queue", id: a.OutHwQueueId}}, nil
}

// ID is the queue's object id.
func (h *HWQueue) ID() uint32 { return h.id }

// Close destroys the queue.
func (h *HWQueue) Close() error { return h.close(nil) }
