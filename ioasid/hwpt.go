package ioasid

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/uapi"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// HWPT flags (IOMMU_HWPT_ALLOC).
const (
	HWPTNestParent    = uapi.IOMMU_HWPT_ALLOC_NEST_PARENT
	HWPTDirtyTracking = uapi.IOMMU_HWPT_ALLOC_DIRTY_TRACKING
)

// HWPT is a hardware page table: the IOMMU domain a device is attached to,
// holding the mappings of its IOAS. Its methods are safe for concurrent
// use; after Close every one fails with ErrClosed.
type HWPT struct {
	object
}

// HWPTOptions are the optional parts of IOMMU_HWPT_ALLOC.
type HWPTOptions struct {
	// Flags: HWPTNestParent, HWPTDirtyTracking (paging HWPTs only).
	Flags uint32
	// Fault, if set, receives the I/O page faults of the devices attached
	// to the HWPT (IOMMU_HWPT_FAULT_ID_VALID, Linux 6.11). A nest parent
	// cannot take one.
	Fault *FaultQueue
}

// AllocHWPT is IOMMU_HWPT_ALLOC: a kernel-managed page table for the
// device devID (from vfio.Device.BindIOMMUFD) mirroring ioas. It is
// AllocPagingHWPT with only flags.
func (f *FD) AllocHWPT(devID uint32, ioas *IOAS, flags uint32) (*HWPT, error) {
	return f.AllocPagingHWPT(devID, ioas, &HWPTOptions{Flags: flags})
}

// AllocPagingHWPT is IOMMU_HWPT_ALLOC of a paging HWPT for the device
// devID mirroring ioas; o may be nil.
func (f *FD) AllocPagingHWPT(devID uint32, ioas *IOAS, o *HWPTOptions) (*HWPT, error) {
	if o == nil {
		o = &HWPTOptions{}
	}
	var h *HWPT
	err := ioas.use("IOMMU_HWPT_ALLOC", func(id uint32) (err error) {
		h, err = f.allocHWPT(uapi.IommuHwptAlloc{Flags: o.Flags, DevId: devID, PtId: id}, fmt.Sprintf("dev %d ioas %d flags %#x", devID, id, o.Flags), o.Fault)
		return err
	})
	if o.Flags&HWPTDirtyTracking != 0 && errors.Is(err, unix.EOPNOTSUPP) {
		return nil, &vfioerr.NotSupportedError{Feature: "IOMMU_HWPT_ALLOC_DIRTY_TRACKING on device " + fmt.Sprint(devID),
			Reason: "the IOMMU does not track dirty pages (needs e.g. VT-d second-stage A/D bits or AMD HAD)"}
	}
	return h, err
}

// AllocNestedHWPT is IOMMU_HWPT_ALLOC of a nested (stage-1) HWPT on parent,
// a HWPT allocated with HWPTNestParent: the IOMMU translates through the
// page table data describes (of dataType, e.g. uapi.IOMMU_HWPT_DATA_VTD_S1)
// and then through parent. Only o.Fault applies; o may be nil.
func (f *FD) AllocNestedHWPT(devID uint32, parent *HWPT, dataType uint32, data []byte, o *HWPTOptions) (*HWPT, error) {
	if o == nil {
		o = &HWPTOptions{}
	}
	if len(data) == 0 {
		return nil, kernel.Call{Op: "IOMMU_HWPT_ALLOC", Object: f.Name(), Args: fmt.Sprintf("dev %d data type %#x", devID, dataType)}.Refuse(unix.EINVAL, "a nested HWPT needs its driver's stage-1 data")
	}
	var h *HWPT
	err := parent.use("IOMMU_HWPT_ALLOC", func(id uint32) (err error) {
		a := uapi.IommuHwptAlloc{Flags: o.Flags, DevId: devID, PtId: id, DataType: dataType, DataLen: uint32(len(data)), DataUptr: uapi.SlicePointer(data)}
		h, err = f.allocHWPT(a, fmt.Sprintf("dev %d parent hwpt %d data type %#x", devID, id, dataType), o.Fault)
		return err
	})
	return h, err
}

// allocHWPT issues IOMMU_HWPT_ALLOC with a, adding the fault queue's id
// while it is open.
func (f *FD) allocHWPT(a uapi.IommuHwptAlloc, args string, fault *FaultQueue) (*HWPT, error) {
	alloc := func() error {
		return f.fd.Ioctl(call("IOMMU_HWPT_ALLOC", uapi.IOMMU_HWPT_ALLOC, args), func(fd int) error { return uapi.IoctlIommuHwptAlloc(fd, &a) })
	}
	var err error
	if fault == nil {
		err = alloc()
	} else {
		err = fault.use("IOMMU_HWPT_ALLOC", func(id uint32) error {
			a.Flags |= uapi.IOMMU_HWPT_FAULT_ID_VALID
			a.FaultId = id
			args += fmt.Sprintf(" fault %d", id)
			return alloc()
		})
	}
	if err != nil {
		return nil, err
	}
	return &HWPT{object: object{fd: f, kind: "hwpt", id: a.OutHwptId}}, nil
}

// ID is the HWPT's object id (for vfio.Device.AttachPT).
func (h *HWPT) ID() uint32 { return h.id }

// Close destroys the HWPT (EBUSY while a device is attached: detach it and
// retry). A second Close, and every use after Close, fails with ErrClosed.
func (h *HWPT) Close() error { return h.close(nil) }

// SetDirtyTracking is IOMMU_HWPT_SET_DIRTY_TRACKING.
func (h *HWPT) SetDirtyTracking(on bool) error {
	return h.use("IOMMU_HWPT_SET_DIRTY_TRACKING", func(id uint32) error {
		s := uapi.IommuHwptSetDirtyTracking{HwptId: id}
		if on {
			s.Flags = uapi.IOMMU_HWPT_DIRTY_TRACKING_ENABLE
		}
		return h.fd.fd.Ioctl(call("IOMMU_HWPT_SET_DIRTY_TRACKING", uapi.IOMMU_HWPT_SET_DIRTY_TRACKING, fmt.Sprintf("hwpt %d on=%v", id, on)), func(fd int) error { return uapi.IoctlIommuHwptSetDirtyTracking(fd, &s) })
	})
}

// DirtyBitmap is IOMMU_HWPT_GET_DIRTY_BITMAP for [iova, iova+length) at
// pageSize granularity: bit i of the result is page i. clear=false keeps
// the bits set (IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR).
func (h *HWPT) DirtyBitmap(iova, length, pageSize uint64, clear bool) ([]uint64, error) {
	if pageSize == 0 || length == 0 || length%pageSize != 0 {
		return nil, kernel.Call{Op: "IOMMU_HWPT_GET_DIRTY_BITMAP", Object: h.fd.Name(), Args: fmt.Sprintf("length %#x page %#x", length, pageSize)}.Refuse(unix.EINVAL, "length must be a non-zero multiple of the page size")
	}
	raw := make([]byte, (length/pageSize+63)/64*8) // the kernel writes it through Data
	err := h.use("IOMMU_HWPT_GET_DIRTY_BITMAP", func(id uint32) error {
		g := uapi.IommuHwptGetDirtyBitmap{HwptId: id, Iova: iova, Length: length, PageSize: pageSize, Data: uapi.SlicePointer(raw)}
		if !clear {
			g.Flags = uapi.IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR
		}
		return h.fd.fd.Ioctl(call("IOMMU_HWPT_GET_DIRTY_BITMAP", uapi.IOMMU_HWPT_GET_DIRTY_BITMAP, fmt.Sprintf("hwpt %d iova=%#x length=%#x", id, iova, length)), func(fd int) error { return uapi.IoctlIommuHwptGetDirtyBitmap(fd, &g) })
	})
	if err != nil {
		return nil, err
	}
	return words(raw), nil
}

// Invalidate is IOMMU_HWPT_INVALIDATE on a nested HWPT: requests of
// dataType (e.g. uapi.IOMMU_HWPT_INVALIDATE_DATA_VTD_S1), each one entry of
// the IOMMU driver's invalidation struct, all of one length. It returns
// how many requests the kernel handled: on an error, the index of the
// request it stopped at.
func (h *HWPT) Invalidate(dataType uint32, reqs ...[]byte) (int, error) {
	var entrySize int
	if len(reqs) > 0 {
		entrySize = len(reqs[0])
	}
	buf := make([]byte, 0, len(reqs)*entrySize+1) // read through DataUptr; never empty
	for i, r := range reqs {
		if len(r) != entrySize {
			return 0, kernel.Call{Op: "IOMMU_HWPT_INVALIDATE", Object: h.fd.Name()}.Refuse(unix.EINVAL,
				fmt.Sprintf("request %d is %d bytes, request 0 %d: the kernel takes entries of one length", i, len(r), entrySize))
		}
		buf = append(buf, r...)
	}
	buf = append(buf, 0)
	n := uint32(len(reqs))
	var done uint32
	err := h.use("IOMMU_HWPT_INVALIDATE", func(id uint32) error {
		inv := uapi.IommuHwptInvalidate{HwptId: id, DataUptr: uapi.SlicePointer(buf), DataType: dataType, EntryLen: uint32(entrySize), EntryNum: n}
		c := call("IOMMU_HWPT_INVALIDATE", uapi.IOMMU_HWPT_INVALIDATE, fmt.Sprintf("hwpt %d type %#x n %d", id, dataType, n))
		stopped := func() string {
			return fmt.Sprintf("the kernel handled %d of %d requests and stopped at request %d", inv.EntryNum, n, inv.EntryNum)
		}
		c.Hints = kernel.Hints{
			unix.ENOENT: func() string { return fmt.Sprintf("hwpt %d is not a nested HWPT", id) },
			unix.EINVAL: stopped, unix.EOPNOTSUPP: stopped, unix.EIO: stopped, unix.EFAULT: stopped,
		}
		err := h.fd.fd.Ioctl(c, func(fd int) error { return uapi.IoctlIommuHwptInvalidate(fd, &inv) })
		done = inv.EntryNum
		return err
	})
	return int(done), err
}
