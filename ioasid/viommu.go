package ioasid

import (
	"fmt"
	"unsafe"

	"github.com/vfioctl/vfioctl/uapi"
)

// The vIOMMU family (Linux 6.13+) exposes a slice of a physical IOMMU to a
// VM. These calls exist on every kernel; where the running one lacks them
// they return an error matching ErrNotSupported that names the version.

// AllocVIOMMU is IOMMU_VIOMMU_ALLOC on a nesting-parent HWPT; it returns
// the vIOMMU id.
func (f *FD) AllocVIOMMU(devID uint32, parent *HWPT, typ uint32) (uint32, error) {
	a := uapi.IommuViommuAlloc{Size: uint32(unsafe.Offsetof(uapi.IommuViommuAlloc{}.DataLen)), Type: typ, DevId: devID, HwptId: parent.id}
	err := f.ioctl("IOMMU_VIOMMU_ALLOC", uapi.IOMMU_VIOMMU_ALLOC, unsafe.Pointer(&a), fmt.Sprintf("dev %d hwpt %d type %d", devID, parent.id, typ))
	return a.OutViommuId, err
}

// AllocVDevice is IOMMU_VDEVICE_ALLOC: the device's guest-visible ID on a vIOMMU.
func (f *FD) AllocVDevice(viommuID, devID uint32, virtID uint64) (uint32, error) {
	a := uapi.IommuVdeviceAlloc{Size: uint32(unsafe.Sizeof(uapi.IommuVdeviceAlloc{})), ViommuId: viommuID, DevId: devID, VirtId: virtID}
	err := f.ioctl("IOMMU_VDEVICE_ALLOC", uapi.IOMMU_VDEVICE_ALLOC, unsafe.Pointer(&a), fmt.Sprintf("viommu %d dev %d virt %#x", viommuID, devID, virtID))
	return a.OutVdeviceId, err
}

// AllocVEventQueue is IOMMU_VEVENTQ_ALLOC; it returns the queue id and its
// fd (owned by the caller).
func (f *FD) AllocVEventQueue(viommuID, typ, depth uint32) (id uint32, fd int, err error) {
	a := uapi.IommuVeventqAlloc{Size: uint32(unsafe.Sizeof(uapi.IommuVeventqAlloc{})), ViommuId: viommuID, Type: typ, VeventqDepth: depth}
	err = f.ioctl("IOMMU_VEVENTQ_ALLOC", uapi.IOMMU_VEVENTQ_ALLOC, unsafe.Pointer(&a), fmt.Sprintf("viommu %d type %d", viommuID, typ))
	return a.OutVeventqId, int(int32(a.OutVeventqFd)), err
}

// AllocHWQueue is IOMMU_HW_QUEUE_ALLOC; it returns the queue id.
func (f *FD) AllocHWQueue(viommuID, typ, index uint32, iova, length uint64) (uint32, error) {
	a := uapi.IommuHwQueueAlloc{Size: uint32(unsafe.Sizeof(uapi.IommuHwQueueAlloc{})), ViommuId: viommuID, Type: typ, Index: index, NestingParentIova: iova, Length: length}
	err := f.ioctl("IOMMU_HW_QUEUE_ALLOC", uapi.IOMMU_HW_QUEUE_ALLOC, unsafe.Pointer(&a), fmt.Sprintf("viommu %d type %d index %d", viommuID, typ, index))
	return a.OutHwQueueId, err
}
