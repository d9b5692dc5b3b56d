package ioasid

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/uapi"
)

// HWPT flags (IOMMU_HWPT_ALLOC).
const (
	HWPTNestParent    = uapi.IOMMU_HWPT_ALLOC_NEST_PARENT
	HWPTDirtyTracking = uapi.IOMMU_HWPT_ALLOC_DIRTY_TRACKING
)

// HWPT is a hardware page table: the IOMMU domain a device is attached to,
// holding the mappings of its IOAS.
type HWPT struct {
	fd     *FD
	id     uint32
	closed bool
}

// AllocHWPT is IOMMU_HWPT_ALLOC: a kernel-managed page table for the
// device devID (from vfio.Device.BindIOMMUFD) mirroring ioas.
func (f *FD) AllocHWPT(devID uint32, ioas *IOAS, flags uint32) (*HWPT, error) {
	a := uapi.IommuHwptAlloc{Size: uint32(unsafe.Sizeof(uapi.IommuHwptAlloc{})), Flags: flags, DevId: devID, PtId: ioas.id}
	err := f.ioctl("IOMMU_HWPT_ALLOC", uapi.IOMMU_HWPT_ALLOC, unsafe.Pointer(&a), fmt.Sprintf("dev %d ioas %d flags %#x", devID, ioas.id, flags))
	if flags&HWPTDirtyTracking != 0 && errors.Is(err, unix.EOPNOTSUPP) {
		return nil, &kernel.NotSupportedError{Feature: "IOMMU_HWPT_ALLOC_DIRTY_TRACKING on device " + fmt.Sprint(devID),
			Reason: "the IOMMU does not track dirty pages (needs e.g. VT-d second-stage A/D bits or AMD HAD)"}
	}
	if err != nil {
		return nil, err
	}
	return &HWPT{fd: f, id: a.OutHwptId}, nil
}

// ID is the HWPT's object id (for vfio.Device.AttachPT).
func (h *HWPT) ID() uint32 { return h.id }

// Close destroys the HWPT; detach devices first.
func (h *HWPT) Close() error {
	if h.closed {
		return &kernel.Error{Op: "IOMMU_DESTROY", Object: h.fd.Name(), Args: fmt.Sprintf("hwpt %d", h.id), Err: kernel.ErrClosed}
	}
	h.closed = true
	return h.fd.Destroy(h.id)
}

// SetDirtyTracking is IOMMU_HWPT_SET_DIRTY_TRACKING.
func (h *HWPT) SetDirtyTracking(on bool) error {
	s := uapi.IommuHwptSetDirtyTracking{Size: uint32(unsafe.Sizeof(uapi.IommuHwptSetDirtyTracking{})), HwptId: h.id}
	if on {
		s.Flags = uapi.IOMMU_HWPT_DIRTY_TRACKING_ENABLE
	}
	return h.fd.ioctl("IOMMU_HWPT_SET_DIRTY_TRACKING", uapi.IOMMU_HWPT_SET_DIRTY_TRACKING, unsafe.Pointer(&s), fmt.Sprintf("hwpt %d on=%v", h.id, on))
}

// DirtyBitmap is IOMMU_HWPT_GET_DIRTY_BITMAP for [iova, iova+length) at
// pageSize granularity: bit i of the result is page i. clear=false keeps
// the bits set (IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR).
func (h *HWPT) DirtyBitmap(iova, length, pageSize uint64, clear bool) ([]uint64, error) {
	if pageSize == 0 || length == 0 || length%pageSize != 0 {
		return nil, &kernel.Error{Op: "IOMMU_HWPT_GET_DIRTY_BITMAP", Object: h.fd.Name(), Args: fmt.Sprintf("length %#x page %#x", length, pageSize), Err: unix.EINVAL, Hint: "length must be a non-zero multiple of the page size"}
	}
	pages := length / pageSize
	bm := make([]uint64, (pages+63)/64)
	g := uapi.IommuHwptGetDirtyBitmap{Size: uint32(unsafe.Sizeof(uapi.IommuHwptGetDirtyBitmap{})), HwptId: h.id, Iova: iova, Length: length,
		PageSize: pageSize, Data: uint64(uintptr(unsafe.Pointer(&bm[0])))}
	if !clear {
		g.Flags = uapi.IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR
	}
	err := h.fd.ioctl("IOMMU_HWPT_GET_DIRTY_BITMAP", uapi.IOMMU_HWPT_GET_DIRTY_BITMAP, unsafe.Pointer(&g), fmt.Sprintf("hwpt %d iova=%#x length=%#x", h.id, iova, length))
	return bm, err
}

// Invalidate is IOMMU_HWPT_INVALIDATE on a nested HWPT with driver-specific
// requests of dataType (e.g. uapi.IOMMU_HWPT_INVALIDATE_DATA_VTD_S1), each
// entrySize bytes. It returns how many requests the kernel handled.
func (h *HWPT) Invalidate(dataType uint32, reqs []byte, entrySize, n uint32) (uint32, error) {
	if uint64(entrySize)*uint64(n) > uint64(len(reqs)) {
		return 0, &kernel.Error{Op: "IOMMU_HWPT_INVALIDATE", Object: h.fd.Name(), Err: unix.EINVAL, Hint: "request buffer shorter than n*entrySize"}
	}
	var p uintptr
	if len(reqs) > 0 {
		p = uintptr(unsafe.Pointer(&reqs[0]))
	}
	inv := uapi.IommuHwptInvalidate{Size: uint32(unsafe.Sizeof(uapi.IommuHwptInvalidate{})), HwptId: h.id, DataUptr: uint64(p), DataType: dataType, EntryLen: entrySize, EntryNum: n}
	err := h.fd.ioctl("IOMMU_HWPT_INVALIDATE", uapi.IOMMU_HWPT_INVALIDATE, unsafe.Pointer(&inv), fmt.Sprintf("hwpt %d type %d n %d", h.id, dataType, n))
	return inv.EntryNum, err
}
