package vfio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/dma"
	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/ioasid"
	"github.com/vfioctl/vfioctl/uapi"
	"github.com/vfioctl/vfioctl/vfioerr"
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
	case SPAPRTCE:
		return "spapr-tce"
	case SPAPRTCEv2:
		return "spapr-tce-v2"
	}
	return fmt.Sprintf("IOMMUType(%d)", int(t))
}

// Container is a VFIO container: one IOMMU context shared by its groups.
// It is a dma.Mapper once SetIOMMU has succeeded. Its methods are safe for
// concurrent use; after Close every one fails with ErrClosed.
type Container struct {
	fd    *kernel.FD
	iommu atomic.Int32 // IOMMUType; 0 until SetIOMMU
	spapr spaprState
}

// OpenContainer opens /dev/vfio/vfio.
func OpenContainer() (*Container, error) { return OpenContainerPath(ContainerPath) }

// OpenContainerPath opens a container at path: /dev/vfio/vfio, or
// /dev/iommu to use iommufd's type1 compatibility directly.
func OpenContainerPath(path string) (*Container, error) {
	fd, err := kernel.OpenPath(path)
	if err != nil {
		if path == ioasid.Path && errors.Is(err, unix.ENOENT) {
			return nil, &vfioerr.NotSupportedError{Feature: "iommufd as a VFIO container (" + path + ")", Version: "6.2",
				Reason: "no such device node: the kernel lacks CONFIG_IOMMUFD"}
		}
		return nil, err
	}
	return newContainer(fd, 0)
}

// NewContainer takes ownership of a pre-opened container fd (for example
// one handed over by a privileged helper). iommu is the model the sender
// already set with VFIO_SET_IOMMU, or 0 if none: the kernel has no call
// that reports it.
func NewContainer(fd int, iommu IOMMUType) (*Container, error) {
	f, err := kernel.NewFD(fd, kernel.NameOf(fd, fmt.Sprintf("container fd %d", fd)))
	if err != nil {
		return nil, err
	}
	return newContainer(f, iommu)
}

func newContainer(fd *kernel.FD, iommu IOMMUType) (*Container, error) {
	c := &Container{fd: fd}
	c.iommu.Store(int32(iommu))
	v, err := c.APIVersion()
	if err != nil {
		fd.Close()
		return nil, err
	}
	if v != uapi.VFIO_API_VERSION {
		fd.Close()
		return nil, &vfioerr.OpError{Op: "VFIO_GET_API_VERSION", Object: fd.Name(), Err: unix.EPROTO,
			Hint: fmt.Sprintf("speaks VFIO API %d, want %d", v, uapi.VFIO_API_VERSION)}
	}
	return c, nil
}

// FD is the container's descriptor (for VFIO_GROUP_SET_CONTAINER). It stays
// owned by the container.
func (c *Container) FD() (int, error) { return c.fd.Int() }

// Dup returns a new descriptor for the container, owned by the caller (to
// send to another process, see Handle.Send).
func (c *Container) Dup() (int, error) { return c.fd.Dup() }

// Name is the path or name the container was opened as.
func (c *Container) Name() string { return c.fd.Name() }

// Close releases the container; its mappings go with it. A second Close
// fails with ErrClosed.
func (c *Container) Close() error { return c.fd.Close() }

// do runs one ioctl helper on the container's fd; a failure becomes an
// OpError naming op and the container.
func (c *Container) do(op, args string, fn func(fd int) error) error {
	if err := c.fd.Do(fn); err != nil {
		return &vfioerr.OpError{Op: op, Object: c.fd.Name(), Args: args, Err: err}
	}
	return nil
}

// APIVersion is VFIO_GET_API_VERSION.
func (c *Container) APIVersion() (int, error) {
	var v int
	err := c.do("VFIO_GET_API_VERSION", "", func(fd int) (err error) {
		v, err = uapi.IoctlVfioGetApiVersion(fd)
		return err
	})
	return v, err
}

// CheckExtension is VFIO_CHECK_EXTENSION: whether the container supports
// an IOMMU type or extension (uapi.VFIO_TYPE1v2_IOMMU, uapi.VFIO_UNMAP_ALL ...).
func (c *Container) CheckExtension(ext int) (bool, error) {
	var v int
	err := c.do("VFIO_CHECK_EXTENSION", fmt.Sprint(ext), func(fd int) (err error) {
		v, err = uapi.IoctlVfioCheckExtension(fd, uintptr(ext))
		return err
	})
	return v > 0, err
}

// SetIOMMU is VFIO_SET_IOMMU. Type 0 picks the best the container offers
// (type1v2, else type1; on POWER SPAPR TCE v2, else v1). At least one
// group must be attached first. A SPAPRTCE (v1) container still needs
// Enable before it maps.
func (c *Container) SetIOMMU(t IOMMUType) error {
	if t == 0 {
		for _, cand := range []IOMMUType{Type1v2, Type1, SPAPRTCEv2, SPAPRTCE} {
			if ok, err := c.CheckExtension(int(cand)); err != nil {
				return err
			} else if ok {
				t = cand
				break
			}
		}
		if t == 0 {
			return &vfioerr.NotSupportedError{Feature: "a VFIO IOMMU model on " + c.fd.Name(), Reason: "the container offers neither type1 nor SPAPR TCE (is an IOMMU enabled?)"}
		}
	}
	err := c.do("VFIO_SET_IOMMU", t.String(), func(fd int) error {
		_, err := uapi.IoctlVfioSetIommu(fd, uintptr(t))
		return err
	})
	if err != nil {
		e := err.(*vfioerr.OpError)
		switch {
		case errors.Is(err, unix.EPERM):
			e.Hint = unsafeInterruptsHint()
		case errors.Is(err, unix.EINVAL) && c.IOMMU() != 0:
			e.Hint = "the IOMMU model is already set (" + c.IOMMU().String() + ")"
		case errors.Is(err, unix.EINVAL):
			e.Hint = "no group is attached yet (Group.SetContainer first), or the model is already set"
		}
		return e
	}
	c.iommu.Store(int32(t))
	return nil
}

// IOMMU is the model set by SetIOMMU, or passed to NewContainer (0 when
// none is known).
func (c *Container) IOMMU() IOMMUType { return IOMMUType(c.iommu.Load()) }

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
		return c.do("VFIO_IOMMU_GET_INFO", "", func(fd int) error { return uapi.IoctlVfioIommuGetInfo(fd, b) })
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
		return nil, &vfioerr.OpError{Op: "VFIO_IOMMU_GET_INFO", Object: c.fd.Name(), Err: err}
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
// The kernel writes the size it needs into argsz; the helpers set argsz to
// the buffer's length before each call.
func growIoctl(size uint32, fn func([]byte) error) ([]byte, error) {
	for try := 0; try < 4; try++ {
		buf := kernel.HeapBytes(int(size))
		if err := fn(buf); err != nil {
			return nil, err
		}
		need := binary.NativeEndian.Uint32(buf)
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
		return &vfioerr.OpError{Op: "VFIO_IOMMU_MAP_DMA", Object: c.fd.Name(), Args: fmt.Sprintf("iova=%#x", iova), Err: unix.EINVAL, Hint: "empty buffer"}
	}
	m := uapi.VfioIommuType1DmaMap{
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
	err := c.fd.Do(func(fd int) error { return positiveRefusal(uapi.IoctlVfioIommuMapDma(fd, &m)) })
	runtime.KeepAlive(mem) // the kernel reads mem through m.Vaddr
	if err != nil {
		e := kernel.MapError("VFIO_IOMMU_MAP_DMA", c.fd.Name(), fmt.Sprintf("iova=%#x size=%#x", iova, len(mem)), err)
		if t := c.IOMMU(); t.IsSPAPR() {
			if h := spaprMapHint(t, err, c.hasRegistrations()); h != "" {
				e.(*vfioerr.OpError).Hint = h
			}
		}
		return e
	}
	return nil
}

// Unmap is VFIO_IOMMU_UNMAP_DMA for [iova, iova+size). Under type1,
// unmapping a range that is not mapped, or only part of a mapping, is an
// error; SPAPR TCE clears whatever entries the range holds, none included.
func (c *Container) Unmap(iova, size uint64) error {
	u := uapi.VfioIommuType1DmaUnmap{Iova: iova, Size: size}
	if err := c.fd.Do(func(fd int) error { return positiveRefusal(uapi.IoctlVfioIommuUnmapDma(fd, &u)) }); err != nil {
		e := &vfioerr.OpError{Op: "VFIO_IOMMU_UNMAP_DMA", Object: c.fd.Name(), Args: fmt.Sprintf("iova=%#x size=%#x", iova, size), Err: err}
		if errors.Is(err, errTCEParam) {
			e.Hint = tceParamHint
		}
		return e
	}
	if u.Size != size {
		// type1 unmaps whole mappings inside the range and reports the
		// bytes; zero means nothing was mapped there.
		return &vfioerr.OpError{Op: "VFIO_IOMMU_UNMAP_DMA", Object: c.fd.Name(), Args: fmt.Sprintf("iova=%#x size=%#x", iova, size),
			Err: unix.ENOENT, Hint: fmt.Sprintf("only %#x bytes were mapped in that range", u.Size)}
	}
	return nil
}

// UnmapAll removes every mapping (VFIO_DMA_UNMAP_FLAG_ALL, Linux 5.14) and
// returns the bytes unmapped. SPAPR TCE has no such flag: every window is
// cleared instead, and 0 returned (the kernel does not count).
func (c *Container) UnmapAll() (uint64, error) {
	if c.IOMMU().IsSPAPR() {
		return 0, c.spaprUnmapAll()
	}
	u := uapi.VfioIommuType1DmaUnmap{Flags: uapi.VFIO_DMA_UNMAP_FLAG_ALL}
	if err := c.fd.Do(func(fd int) error { _, err := uapi.IoctlVfioIommuUnmapDma(fd, &u); return err }); err != nil {
		if ok, cerr := c.CheckExtension(uapi.VFIO_UNMAP_ALL); cerr == nil && !ok {
			return 0, &vfioerr.NotSupportedError{Feature: "VFIO_DMA_UNMAP_FLAG_ALL on " + c.fd.Name(), Version: "5.14"}
		}
		return 0, &vfioerr.OpError{Op: "VFIO_IOMMU_UNMAP_DMA", Object: c.fd.Name(), Args: "all", Err: err}
	}
	return u.Size, nil
}

// IOVARanges implements dma.Mapper: the ranges of VFIO_IOMMU_GET_INFO, or
// the whole 64-bit space when the kernel reports none; under SPAPR TCE the
// DMA windows.
func (c *Container) IOVARanges() ([]dma.Range, error) {
	if c.IOMMU().IsSPAPR() {
		return c.spaprRanges()
	}
	info, err := c.Info()
	if err != nil {
		return nil, err
	}
	if len(info.IOVARanges) == 0 {
		return []dma.Range{{Start: 0, Last: ^uint64(0)}}, nil
	}
	return info.IOVARanges, nil
}

// Alignment implements dma.Mapper: the smallest IOMMU page size; under
// SPAPR TCE the largest TCE page size of the windows.
func (c *Container) Alignment() (uint64, error) {
	if c.IOMMU().IsSPAPR() {
		return c.spaprAlignment()
	}
	info, err := c.Info()
	if err != nil {
		return 0, err
	}
	if info.PageSizes == 0 {
		return 0, &vfioerr.OpError{Op: "VFIO_IOMMU_GET_INFO", Object: c.fd.Name(), Err: unix.ENODATA, Hint: "no IOMMU page sizes reported"}
	}
	return 1 << bits.TrailingZeros64(info.PageSizes), nil
}

var _ dma.Mapper = (*Container)(nil)
