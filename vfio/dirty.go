package vfio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/uapi"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// Type1 dirty page tracking (VFIO_IOMMU_DIRTY_PAGES, Linux 5.8): while on,
// the kernel records which pinned pages devices may have written. Offered
// when IOMMUInfo.Migration is set; iommufd's compat container does not
// offer it (use ioasid.HWPT dirty tracking there).

func (c *Container) dirtyPages(flags uint32, what string) error {
	buf := kernel.HeapBytes(int(unsafe.Sizeof(uapi.VfioIommuType1DirtyBitmap{})))
	(*uapi.VfioIommuType1DirtyBitmap)(unsafe.Pointer(&buf[0])).Flags = flags
	if err := c.fd.Do(func(fd int) error { return uapi.IoctlVfioIommuDirtyPages(fd, buf) }); err != nil {
		return c.dirtyError(what, err)
	}
	return nil
}

func (c *Container) dirtyError(what string, err error) error {
	if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EOPNOTSUPP) {
		return &vfioerr.NotSupportedError{Feature: "VFIO_IOMMU_DIRTY_PAGES on " + c.fd.Name(),
			Reason: "this container does not track dirty pages (the type1 container does since Linux 5.8; iommufd's compat container never does: use HWPT dirty tracking)"}
	}
	return &vfioerr.OpError{Op: "VFIO_IOMMU_DIRTY_PAGES", Object: c.fd.Name(), Args: what, Err: err}
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
		return nil, &vfioerr.OpError{Op: "VFIO_IOMMU_DIRTY_PAGES", Object: c.fd.Name(), Args: fmt.Sprintf("size %#x page %#x", size, pageSize), Err: unix.EINVAL,
			Hint: "size must be a non-zero multiple of the page size"}
	}
	pages := size / pageSize
	raw := kernel.HeapBytes(int((pages + 63) / 64 * 8)) // the kernel writes it through Bitmap.Data
	hdr := unsafe.Sizeof(uapi.VfioIommuType1DirtyBitmap{})
	buf := kernel.HeapBytes(int(hdr + unsafe.Sizeof(uapi.VfioIommuType1DirtyBitmapGet{})))
	(*uapi.VfioIommuType1DirtyBitmap)(unsafe.Pointer(&buf[0])).Flags = uapi.VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP
	*(*uapi.VfioIommuType1DirtyBitmapGet)(unsafe.Pointer(&buf[hdr])) = uapi.VfioIommuType1DirtyBitmapGet{Iova: iova, Size: size,
		Bitmap: uapi.VfioBitmap{Pgsize: pageSize, Size: uint64(len(raw)), Data: uint64(uintptr(unsafe.Pointer(&raw[0])))}}
	err := c.fd.Do(func(fd int) error { return uapi.IoctlVfioIommuDirtyPages(fd, buf) })
	runtime.KeepAlive(raw)
	if err != nil {
		return nil, c.dirtyError(fmt.Sprintf("get bitmap iova=%#x size=%#x", iova, size), err)
	}
	bm := make([]uint64, len(raw)/8)
	for i := range bm {
		bm[i] = binary.NativeEndian.Uint64(raw[8*i:])
	}
	return bm, nil
}
