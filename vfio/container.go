package vfio

import (
	"errors"
	"fmt"
	"math/bits"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/dma"
	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/uapi"
)

// ContainerPath is the legacy VFIO container device. On kernels built with
// IOMMUFD_VFIO_CONTAINER it is served by iommufd.
const ContainerPath = "/dev/vfio/vfio"

// IOMMUType is a container IOMMU model (VFIO_SET_IOMMU argument).
type IOMMUType int

const (
	Type1   IOMMUType = uapi.VFIO_TYPE1_IOMMU
	Type1v2 IOMMUType = uapi.VFIO_TYPE1v2_IOMMU
	NoIOMMU IOMMUType = uapi.VFIO_NOIOMMU_IOMMU
)

func (t IOMMUType) String() string {
	switch t {
	case Type1:
		return "type1"
	case Type1v2:
		return "type1v2"
	case NoIOMMU:
		return "noiommu"
	}
	return fmt.Sprintf("IOMMUType(%d)", int(t))
}

// Container is a VFIO container: one IOMMU context shared by its groups.
// It is a dma.Mapper once SetIOMMU has succeeded.
type Container struct {
	fd    *kernel.FD
	iommu IOMMUType
}

// OpenContainer opens /dev/vfio/vfio.
func OpenContainer() (*Container, error) { return OpenContainerPath(ContainerPath) }

// OpenContainerPath opens a container at path: /dev/vfio/vfio, or
// /dev/iommu to use iommufd's type1 compatibility directly.
func OpenContainerPath(path string) (*Container, error) {
	fd, err := kernel.OpenPath(path)
	if err != nil {
		return nil, err
	}
	return newContainer(fd)
}

// NewContainer takes ownership of a pre-opened container fd (for example
// one handed over by a privileged helper).
func NewContainer(fd int, name string) (*Container, error) {
	f, err := kernel.NewFD(fd, name)
	if err != nil {
		return nil, err
	}
	return newContainer(f)
}

func newContainer(fd *kernel.FD) (*Container, error) {
	c := &Container{fd: fd}
	v, err := c.APIVersion()
	if err != nil {
		fd.Close()
		return nil, err
	}
	if v != uapi.VFIO_API_VERSION {
		fd.Close()
		return nil, fmt.Errorf("vfio: %s speaks VFIO API %d, want %d", fd.Name(), v, uapi.VFIO_API_VERSION)
	}
	return c, nil
}

// FD is the container's descriptor (for VFIO_GROUP_SET_CONTAINER).
func (c *Container) FD() (int, error) { return c.fd.Int() }

// Name is the path or name the container was opened as.
func (c *Container) Name() string { return c.fd.Name() }

// Close releases the container; its mappings go with it.
func (c *Container) Close() error { return c.fd.Close() }

func (c *Container) ioctl(op string, req uint, arg uintptr) (uintptr, error) {
	r, err := c.fd.Ioctl(req, arg)
	if err != nil {
		return r, &kernel.Error{Op: op, Object: c.fd.Name(), Err: err}
	}
	return r, nil
}

// APIVersion is VFIO_GET_API_VERSION.
func (c *Container) APIVersion() (int, error) {
	v, err := c.ioctl("VFIO_GET_API_VERSION", uapi.VFIO_GET_API_VERSION, 0)
	return int(v), err
}

// CheckExtension is VFIO_CHECK_EXTENSION: whether the container supports
// an IOMMU type or extension (uapi.VFIO_TYPE1v2_IOMMU, uapi.VFIO_UNMAP_ALL ...).
func (c *Container) CheckExtension(ext int) (bool, error) {
	v, err := c.ioctl("VFIO_CHECK_EXTENSION", uapi.VFIO_CHECK_EXTENSION, uintptr(ext))
	return v > 0, err
}

// SetIOMMU is VFIO_SET_IOMMU. Type 0 picks the best the container offers
// (type1v2, else type1). At least one group must be attached first.
func (c *Container) SetIOMMU(t IOMMUType) error {
	if t == 0 {
		for _, cand := range []IOMMUType{Type1v2, Type1} {
			if ok, err := c.CheckExtension(int(cand)); err != nil {
				return err
			} else if ok {
				t = cand
				break
			}
		}
		if t == 0 {
			return &kernel.NotSupportedError{Feature: "VFIO type1 IOMMU on " + c.fd.Name(), Reason: "the container offers neither type1v2 nor type1 (is an IOMMU enabled?)"}
		}
	}
	if _, err := c.fd.Ioctl(uapi.VFIO_SET_IOMMU, uintptr(t)); err != nil {
		e := &kernel.Error{Op: "VFIO_SET_IOMMU", Object: c.fd.Name(), Args: t.String(), Err: err}
		switch {
		case errors.Is(err, unix.EPERM):
			e.Hint = unsafeInterruptsHint
		case errors.Is(err, unix.EINVAL):
			e.Hint = "attach a group with Group.SetContainer first"
		}
		return e
	}
	c.iommu = t
	return nil
}

// IOMMU is the model set by SetIOMMU (0 before).
func (c *Container) IOMMU() IOMMUType { return c.iommu }

// IOMMUInfo is VFIO_IOMMU_GET_INFO, decoded.
type IOMMUInfo struct {
	PageSizes  uint64      // bitmap of supported IOMMU page sizes
	IOVARanges []dma.Range // usable IOVAs (VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE)
	// Migration (VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION), when offered.
	Migration *Migration
	// DMAAvail is how many more mappings the container allows
	// (VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL); -1 when not reported.
	DMAAvail int64
	Caps     []uapi.Cap // the raw chain, for capabilities not decoded here
}

// Migration is the type1 dirty-page tracking capability.
type Migration struct {
	Flags         uint32
	PageSizes     uint64 // page sizes dirty tracking can report
	MaxBitmapSize uint64
}

// Info is VFIO_IOMMU_GET_INFO with its capability chain decoded.
func (c *Container) Info() (*IOMMUInfo, error) {
	hdr := uint32(unsafe.Sizeof(uapi.VfioIommuType1Info{}))
	buf, err := growIoctl(hdr, func(b []byte) error {
		_, err := c.ioctl("VFIO_IOMMU_GET_INFO", uapi.VFIO_IOMMU_GET_INFO, uintptr(unsafe.Pointer(&b[0])))
		return err
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
		return nil, fmt.Errorf("VFIO_IOMMU_GET_INFO on %s: %w", c.fd.Name(), err)
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
			info.Migration = &Migration{Flags: m.Flags, PageSizes: m.PgsizeBitmap, MaxBitmapSize: m.MaxDirtyBitmapSize}
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

// growIoctl calls fn with a buffer whose first uint32 is argsz, growing it
// to the size the kernel asks for (VFIO's argsz protocol).
func growIoctl(size uint32, fn func([]byte) error) ([]byte, error) {
	for try := 0; try < 4; try++ {
		buf := make([]byte, size)
		*(*uint32)(unsafe.Pointer(&buf[0])) = size
		if err := fn(buf); err != nil {
			return nil, err
		}
		need := *(*uint32)(unsafe.Pointer(&buf[0]))
		if need <= size {
			return buf, nil
		}
		if need > 1<<20 {
			return nil, fmt.Errorf("vfio: kernel asks for a %d-byte info buffer", need)
		}
		size = need
	}
	return nil, errors.New("vfio: info buffer size kept changing")
}

// Map is VFIO_IOMMU_MAP_DMA: mem becomes visible to the devices of the
// container at iova. It does not allocate unless it fails.
func (c *Container) Map(iova uint64, mem []byte, perm dma.Perm) error {
	if len(mem) == 0 {
		return &kernel.Error{Op: "VFIO_IOMMU_MAP_DMA", Object: c.fd.Name(), Args: fmt.Sprintf("iova=%#x", iova), Err: unix.EINVAL, Hint: "empty buffer"}
	}
	m := uapi.VfioIommuType1DmaMap{
		Argsz: uint32(unsafe.Sizeof(uapi.VfioIommuType1DmaMap{})),
		Vaddr: uint64(uintptr(unsafe.Pointer(&mem[0]))),
		Iova:  iova,
		Size:  uint64(len(mem)),
	}
	if perm&dma.Read != 0 {
		m.Flags |= uapi.VFIO_DMA_MAP_FLAG_READ
	}
	if perm&dma.Write != 0 {
		m.Flags |= uapi.VFIO_DMA_MAP_FLAG_WRITE
	}
	if _, err := c.fd.Ioctl(uapi.VFIO_IOMMU_MAP_DMA, uintptr(unsafe.Pointer(&m))); err != nil {
		return kernel.MapError("VFIO_IOMMU_MAP_DMA", c.fd.Name(), fmt.Sprintf("iova=%#x size=%#x", iova, len(mem)), err)
	}
	return nil
}

// Unmap is VFIO_IOMMU_UNMAP_DMA for [iova, iova+size). Unmapping a range
// that is not mapped, or only part of a mapping, is an error.
func (c *Container) Unmap(iova, size uint64) error {
	u := uapi.VfioIommuType1DmaUnmap{Argsz: uint32(unsafe.Sizeof(uapi.VfioIommuType1DmaUnmap{})), Iova: iova, Size: size}
	if _, err := c.fd.Ioctl(uapi.VFIO_IOMMU_UNMAP_DMA, uintptr(unsafe.Pointer(&u))); err != nil {
		return &kernel.Error{Op: "VFIO_IOMMU_UNMAP_DMA", Object: c.fd.Name(), Args: fmt.Sprintf("iova=%#x size=%#x", iova, size), Err: err}
	}
	if u.Size != size {
		// type1 unmaps whole mappings inside the range and reports the
		// bytes; zero means nothing was mapped there.
		return &kernel.Error{Op: "VFIO_IOMMU_UNMAP_DMA", Object: c.fd.Name(), Args: fmt.Sprintf("iova=%#x size=%#x", iova, size),
			Err: unix.ENOENT, Hint: fmt.Sprintf("only %#x bytes were mapped in that range", u.Size)}
	}
	return nil
}

// UnmapAll removes every mapping (VFIO_DMA_UNMAP_FLAG_ALL, Linux 5.14).
func (c *Container) UnmapAll() (uint64, error) {
	u := uapi.VfioIommuType1DmaUnmap{Argsz: uint32(unsafe.Sizeof(uapi.VfioIommuType1DmaUnmap{})), Flags: uapi.VFIO_DMA_UNMAP_FLAG_ALL}
	if _, err := c.fd.Ioctl(uapi.VFIO_IOMMU_UNMAP_DMA, uintptr(unsafe.Pointer(&u))); err != nil {
		if ok, _ := c.CheckExtension(uapi.VFIO_UNMAP_ALL); !ok {
			return 0, &kernel.NotSupportedError{Feature: "VFIO_DMA_UNMAP_FLAG_ALL", Version: "5.14"}
		}
		return 0, &kernel.Error{Op: "VFIO_IOMMU_UNMAP_DMA", Object: c.fd.Name(), Args: "all", Err: err}
	}
	return u.Size, nil
}

// IOVARanges implements dma.Mapper: the ranges of VFIO_IOMMU_GET_INFO, or
// the whole 64-bit space when the kernel reports none.
func (c *Container) IOVARanges() ([]dma.Range, error) {
	info, err := c.Info()
	if err != nil {
		return nil, err
	}
	if len(info.IOVARanges) == 0 {
		return []dma.Range{{Start: 0, Last: ^uint64(0)}}, nil
	}
	return info.IOVARanges, nil
}

// Alignment implements dma.Mapper: the smallest IOMMU page size.
func (c *Container) Alignment() (uint64, error) {
	info, err := c.Info()
	if err != nil {
		return 0, err
	}
	if info.PageSizes == 0 {
		return 0, fmt.Errorf("vfio: %s reports no IOMMU page sizes", c.fd.Name())
	}
	return 1 << bits.TrailingZeros64(info.PageSizes), nil
}

var _ dma.Mapper = (*Container)(nil)
