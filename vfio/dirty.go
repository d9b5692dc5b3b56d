package vfio

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/uapi"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// Type1 dirty page tracking (VFIO_IOMMU_DIRTY_PAGES, Linux 5.8): while on,
// the kernel records which pinned pages devices may have written. Offered
// when IOMMUInfo.DirtyTracking is set; iommufd's compat container does not
// offer it (use ioasid.HWPT dirty tracking there).

func (c *Container) dirtyPages(flags uint32, what string) error {
	buf := kernel.HeapBytes(int(unsafe.Sizeof(uapi.VfioIommuType1DirtyBitmap{})))
	(*uapi.VfioIommuType1DirtyBitmap)(unsafe.Pointer(&buf[0])).Flags = flags
	return c.dirtyCall(what, func(fd int) error { return uapi.IoctlVfioIommuDirtyPages(fd, buf) })
}

// dirtyCall issues one VFIO_IOMMU_DIRTY_PAGES; a container that does not
// track dirty pages answers ENOTTY or EOPNOTSUPP, which is ErrNotSupported.
func (c *Container) dirtyCall(what string, fn func(fd int) error) error {
	var refused bool
	err := c.fd.Ioctl(kernel.Call{Op: "VFIO_IOMMU_DIRTY_PAGES", Args: what}, func(fd int) error {
		err := fn(fd)
		refused = err == unix.ENOTTY || err == unix.EOPNOTSUPP
		return err
	})
	if refused {
		return &vfioerr.NotSupportedError{Feature: "VFIO_IOMMU_DIRTY_PAGES on " + c.fd.Name(),
			Reason: "this container does not track dirty pages (the type1 container does since Linux 5.8; iommufd's compat container never does: use HWPT dirty tracking)"}
	}
	return err
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
// pageSize granularity (one IOMMUInfo.DirtyTracking lists): bit i is page i.
func (c *Container) DirtyBitmap(iova, size, pageSize uint64) ([]uint64, error) {
	if pageSize == 0 || size == 0 || size%pageSize != 0 {
		return nil, kernel.Call{Op: "VFIO_IOMMU_DIRTY_PAGES", Object: c.fd.Name(), Args: fmt.Sprintf("size %#x page %#x", size, pageSize)}.Refuse(unix.EINVAL, "size must be a non-zero multiple of the page size")
	}
	pages := size / pageSize
	raw := make([]byte, (pages+63)/64*8) // the kernel writes it through Bitmap.Data
	// The request is the header followed by the GET_BITMAP range, in one
	// typed allocation so the collector sees the bitmap pointer in it.
	req := &struct {
		uapi.VfioIommuType1DirtyBitmap
		Get uapi.VfioIommuType1DirtyBitmapGet
	}{uapi.VfioIommuType1DirtyBitmap{Flags: uapi.VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP},
		uapi.VfioIommuType1DirtyBitmapGet{Iova: iova, Size: size, Bitmap: uapi.VfioBitmap{Pgsize: pageSize, Size: uint64(len(raw)), Data: uapi.SlicePointer(raw)}}}
	buf := unsafe.Slice((*byte)(unsafe.Pointer(req)), unsafe.Sizeof(*req))
	if err := c.dirtyCall(fmt.Sprintf("get bitmap iova=%#x size=%#x", iova, size), func(fd int) error { return uapi.IoctlVfioIommuDirtyPages(fd, buf) }); err != nil {
		return nil, err
	}
	bm := make([]uint64, len(raw)/8)
	for i := range bm {
		bm[i] = binary.NativeEndian.Uint64(raw[8*i:])
	}
	return bm, nil
}
