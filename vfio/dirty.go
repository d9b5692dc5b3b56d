package vfio

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/uapi"
)

// Type1 dirty page tracking (VFIO_IOMMU_DIRTY_PAGES, Linux 5.8): while on,
// the kernel records which pinned pages devices may have written. Offered
// when IOMMUInfo.Migration is set; iommufd's compat container does not
// offer it (use ioasid.HWPT dirty tracking there).

func (c *Container) dirtyPages(flags uint32, what string) error {
	d := uapi.VfioIommuType1DirtyBitmap{Argsz: uint32(unsafe.Sizeof(uapi.VfioIommuType1DirtyBitmap{})), Flags: flags}
	if _, err := c.fd.Ioctl(uapi.VFIO_IOMMU_DIRTY_PAGES, uintptr(unsafe.Pointer(&d))); err != nil {
		return c.dirtyError(what, err)
	}
	return nil
}

func (c *Container) dirtyError(what string, err error) error {
	if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EOPNOTSUPP) {
		return &kernel.NotSupportedError{Feature: "VFIO_IOMMU_DIRTY_PAGES on " + c.fd.Name(),
			Reason: "this container does not track dirty pages (the type1 container does since Linux 5.8; iommufd's compat container never does: use HWPT dirty tracking)"}
	}
	return &kernel.Error{Op: "VFIO_IOMMU_DIRTY_PAGES", Object: c.fd.Name(), Args: what, Err: err}
}

// StartDirtyTracking starts recording dirty pages for every mapping.
func (c *Container) StartDirtyTracking() error {
	return c.dirtyPages(uapi.VFIO_IOMMU_DIRTY_PAGES_FLAG_START, "start")
}

// StopDirtyTracking stops recording.
func (c *Container) StopDirtyTracking() error {
	return c.dirtyPages(uapi.VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP, "stop")
}

// DirtyBitmap reads (and clears) the dirty bits of [iova, iova+size) at
// pageSize granularity (one the Migration capability lists): bit i is page i.
func (c *Container) DirtyBitmap(iova, size, pageSize uint64) ([]uint64, error) {
	if pageSize == 0 || size == 0 || size%pageSize != 0 {
		return nil, &kernel.Error{Op: "VFIO_IOMMU_DIRTY_PAGES", Object: c.fd.Name(), Args: fmt.Sprintf("size %#x page %#x", size, pageSize), Err: unix.EINVAL,
			Hint: "size must be a non-zero multiple of the page size"}
	}
	pages := size / pageSize
	bm := make([]uint64, (pages+63)/64)
	hdr := unsafe.Sizeof(uapi.VfioIommuType1DirtyBitmap{})
	buf := make([]byte, hdr+unsafe.Sizeof(uapi.VfioIommuType1DirtyBitmapGet{}))
	d := (*uapi.VfioIommuType1DirtyBitmap)(unsafe.Pointer(&buf[0]))
	d.Argsz, d.Flags = uint32(len(buf)), uapi.VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP
	g := (*uapi.VfioIommuType1DirtyBitmapGet)(unsafe.Pointer(&buf[hdr]))
	*g = uapi.VfioIommuType1DirtyBitmapGet{Iova: iova, Size: size,
		Bitmap: uapi.VfioBitmap{Pgsize: pageSize, Size: uint64(len(bm) * 8), Data: uint64(uintptr(unsafe.Pointer(&bm[0])))}}
	if _, err := c.fd.Ioctl(uapi.VFIO_IOMMU_DIRTY_PAGES, uintptr(unsafe.Pointer(&buf[0]))); err != nil {
		return nil, c.dirtyError(fmt.Sprintf("get bitmap iova=%#x size=%#x", iova, size), err)
	}
	return bm, nil
}
