package vfio

import (
	"fmt"
	"math/bits"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/dma"
	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/uapi"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// The type1 IOMMU model (VFIO_TYPE1v2_IOMMU, and the older VFIO_TYPE1_IOMMU):
// one IOVA space per container, every page pinned as it is mapped. It is
// the model of x86, arm64 and every other platform but POWER, and the one
// iommufd's compatibility container answers.

// IOMMUInfo is VFIO_IOMMU_GET_INFO, decoded.
type IOMMUInfo struct {
	PageSizes  uint64      // bitmap of supported IOMMU page sizes
	IOVARanges []dma.Range // usable IOVAs (VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE)
	// DirtyTracking (VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION), when offered.
	DirtyTracking *DirtyTracking
	// DMAAvail is how many more mappings the container allows
	// (VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL); -1 when not reported.
	DMAAvail int64
	Caps     []uapi.Cap // the raw chain, for capabilities not decoded here
}

// DirtyTracking is the type1 dirty-page tracking capability (the kernel
// calls it CAP_MIGRATION: it serves a VMM's migration of guest memory).
type DirtyTracking struct {
	Flags         uint32
	PageSizes     uint64 // page sizes dirty tracking can report
	MaxBitmapSize uint64
}

// Info is VFIO_IOMMU_GET_INFO with its capability chain decoded.
func (c *Container) Info() (*IOMMUInfo, error) {
	hdr := uint32(unsafe.Sizeof(uapi.VfioIommuType1Info{}))
	buf, err := growIoctl(hdr, func(b []byte) error {
		return c.fd.Ioctl(kernel.Call{Op: "VFIO_IOMMU_GET_INFO"}, func(fd int) error { return uapi.IoctlVfioIommuGetInfo(fd, b) })
	})
	if err != nil {
		return nil, err
	}
	raw := (*uapi.VfioIommuType1Info)(unsafe.Pointer(&buf[0]))
	info := &IOMMUInfo{PageSizes: raw.IovaPgsizes, DMAAvail: -1}
	if raw.Flags&uapi.VFIO_IOMMU_INFO_CAPS == 0 {
		return info, nil
	}
	if info.Caps, err = uapi.Caps(buf, raw.CapOffset, hdr); err != nil {
		return nil, kernel.Call{Op: "VFIO_IOMMU_GET_INFO", Object: c.fd.Name()}.Fail(err)
	}
	for _, cp := range info.Caps {
		switch cp.ID {
		case uapi.VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE:
			rs, err := uapi.IovaRanges(cp)
			if err != nil {
				return nil, err
			}
			for _, r := range rs {
				info.IOVARanges = append(info.IOVARanges, dma.Range{Start: r.Start, Last: r.End})
			}
		case uapi.VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION:
			m, err := uapi.CapAs[uapi.VfioIommuType1InfoCapMigration](cp)
			if err != nil {
				return nil, err
			}
			info.DirtyTracking = &DirtyTracking{Flags: m.Flags, PageSizes: m.PgsizeBitmap, MaxBitmapSize: m.MaxDirtyBitmapSize}
		case uapi.VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL:
			d, err := uapi.CapAs[uapi.VfioIommuType1InfoDmaAvail](cp)
			if err != nil {
				return nil, err
			}
			info.DMAAvail = int64(d.Avail)
		}
	}
	return info, nil
}

// type1 is the dma.Mapper of a type1 container.
type type1 struct{ c *Container }

func (t type1) Map(iova uint64, mem []byte, perm dma.Perm) error {
	if len(mem) == 0 {
		return t.c.dmaCall(opMapDMA, iova, 0, nil).Refuse(unix.EINVAL, "empty buffer")
	}
	if err := t.c.mapDMA(iova, mem, perm); err != nil {
		return t.c.dmaCall(opMapDMA, iova, uint64(len(mem)), kernel.MapHints).Fail(err)
	}
	return nil
}

func (t type1) Unmap(iova, size uint64) error {
	n, err := t.c.unmapDMA(iova, size, 0)
	if err != nil {
		return t.c.dmaCall(opUnmapDMA, iova, size, nil).Fail(err)
	}
	if n != size {
		// type1 unmaps whole mappings inside the range and reports the
		// bytes; zero means nothing was mapped there.
		return t.c.dmaCall(opUnmapDMA, iova, size, nil).Refuse(unix.ENOENT, fmt.Sprintf("only %#x bytes were mapped in that range", n))
	}
	return nil
}

func (t type1) UnmapAll() (uint64, error) {
	n, err := t.c.unmapDMA(0, 0, uapi.VFIO_DMA_UNMAP_FLAG_ALL)
	if err != nil {
		if ok, cerr := t.c.CheckExtension(uapi.VFIO_UNMAP_ALL); cerr == nil && !ok {
			return 0, &vfioerr.NotSupportedError{Feature: "VFIO_DMA_UNMAP_FLAG_ALL on " + t.c.Name(), Version: "5.14"}
		}
		return 0, kernel.Call{Op: opUnmapDMA, Object: t.c.Name(), Args: "all"}.Fail(err)
	}
	return n, nil
}

// IOVARanges are the ranges of VFIO_IOMMU_GET_INFO, or the whole 64-bit
// space when the kernel reports none.
func (t type1) IOVARanges() ([]dma.Range, error) {
	info, err := t.c.Info()
	if err != nil {
		return nil, err
	}
	if len(info.IOVARanges) == 0 {
		return []dma.Range{{Start: 0, Last: ^uint64(0)}}, nil
	}
	return info.IOVARanges, nil
}

// Alignment is the smallest IOMMU page size.
func (t type1) Alignment() (uint64, error) {
	info, err := t.c.Info()
	if err != nil {
		return 0, err
	}
	if info.PageSizes == 0 {
		return 0, kernel.Call{Op: "VFIO_IOMMU_GET_INFO", Object: t.c.Name()}.Refuse(unix.ENODATA, "no IOMMU page sizes reported")
	}
	return 1 << bits.TrailingZeros64(info.PageSizes), nil
}
