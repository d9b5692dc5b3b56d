package vfio

import (
	"errors"
	"fmt"
	"sync/atomic"

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
// It is a dma.Mapper once SetIOMMU has succeeded: the model set there
// decides what Map and the other Mapper methods do (type1 here, SPAPR TCE
// in spapr.go, nothing under NoIOMMU). Its methods are safe for concurrent
// use; after Close every one fails with ErrClosed.
type Container struct {
	fd    *kernel.FD
	model atomic.Pointer[model]
}

// model is a container's IOMMU model and what the Mapper methods do under
// it.
type model struct {
	t IOMMUType
	mapper
}

// mapper is the dma.Mapper of one IOMMU model.
type mapper interface {
	Map(iova uint64, mem []byte, perm dma.Perm) error
	Unmap(iova, size uint64) error
	UnmapAll() (uint64, error)
	IOVARanges() ([]dma.Range, error)
	Alignment() (uint64, error)
}

// OpenContainer opens /dev/vfio/vfio.
func OpenContainer() (*Container, error) { return OpenContainerPath(ContainerPath) }

// OpenContainerPath opens a container at path: /dev/vfio/vfio, or
// /dev/iommu to use iommufd's type1 compatibility directly.
func OpenContainerPath(path string) (*Container, error) {
	fd, err := kernel.OpenPath(path, nil)
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
	c.setModel(iommu)
	v, err := c.APIVersion()
	if err != nil {
		fd.Close()
		return nil, err
	}
	if v != uapi.VFIO_API_VERSION {
		fd.Close()
		return nil, kernel.Call{Op: "VFIO_GET_API_VERSION", Object: fd.Name()}.Refuse(unix.EPROTO, fmt.Sprintf("speaks VFIO API %d, want %d", v, uapi.VFIO_API_VERSION))
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

// APIVersion is VFIO_GET_API_VERSION.
func (c *Container) APIVersion() (int, error) {
	var v int
	err := c.fd.Ioctl(kernel.Call{Op: "VFIO_GET_API_VERSION"}, func(fd int) (err error) {
		v, err = uapi.IoctlVfioGetApiVersion(fd)
		return err
	})
	return v, err
}

// CheckExtension is VFIO_CHECK_EXTENSION: whether the container supports
// an IOMMU type or extension (uapi.VFIO_TYPE1v2_IOMMU, uapi.VFIO_UNMAP_ALL ...).
func (c *Container) CheckExtension(ext int) (bool, error) {
	var v int
	err := c.fd.Ioctl(kernel.Call{Op: "VFIO_CHECK_EXTENSION", Args: fmt.Sprint(ext)}, func(fd int) (err error) {
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
	err := c.fd.Ioctl(kernel.Call{Op: "VFIO_SET_IOMMU", Args: t.String(), Hints: c.setIOMMUHints()}, func(fd int) error {
		_, err := uapi.IoctlVfioSetIommu(fd, uintptr(t))
		return err
	})
	if err != nil {
		return err
	}
	c.setModel(t)
	return nil
}

// setIOMMUHints explain VFIO_SET_IOMMU's errnos.
func (c *Container) setIOMMUHints() kernel.Hints {
	return kernel.Hints{
		unix.EPERM: unsafeInterruptsHint,
		unix.EINVAL: func() string {
			if t := c.IOMMU(); t != 0 {
				return "the IOMMU model is already set (" + t.String() + ")"
			}
			return "no group is attached yet (Group.SetContainer first), or the model is already set"
		},
	}
}

// setModel makes t the container's model: the Mapper methods go to its
// implementation from now on.
func (c *Container) setModel(t IOMMUType) {
	var m mapper
	switch t {
	case Type1, Type1v2:
		m = type1{c}
	case SPAPRTCE, SPAPRTCEv2:
		m = newSPAPR(c, t)
	default:
		m = noModel{c, t}
	}
	c.model.Store(&model{t: t, mapper: m})
}

// IOMMU is the model set by SetIOMMU, or passed to NewContainer (0 when
// none is known).
func (c *Container) IOMMU() IOMMUType { return c.model.Load().t }

// Map is VFIO_IOMMU_MAP_DMA: mem becomes visible to the devices of the
// container at iova. It does not allocate unless it fails.
func (c *Container) Map(iova uint64, mem []byte, perm dma.Perm) error {
	return c.model.Load().Map(iova, mem, perm)
}

// Unmap is VFIO_IOMMU_UNMAP_DMA for [iova, iova+size). Under type1,
// unmapping a range that is not mapped, or only part of a mapping, is an
// error; SPAPR TCE clears whatever entries the range holds, none included.
func (c *Container) Unmap(iova, size uint64) error { return c.model.Load().Unmap(iova, size) }

// UnmapAll removes every mapping and returns the bytes unmapped (type1:
// VFIO_DMA_UNMAP_FLAG_ALL, Linux 5.14; SPAPR TCE clears every window and
// returns 0, the kernel does not count).
func (c *Container) UnmapAll() (uint64, error) { return c.model.Load().UnmapAll() }

// IOVARanges implements dma.Mapper: the IOVAs the model translates (type1:
// the ranges of VFIO_IOMMU_GET_INFO; SPAPR TCE: the DMA windows).
func (c *Container) IOVARanges() ([]dma.Range, error) { return c.model.Load().IOVARanges() }

// Alignment implements dma.Mapper: the smallest IOMMU page size under
// type1, the largest TCE page size of the windows under SPAPR TCE.
func (c *Container) Alignment() (uint64, error) { return c.model.Load().Alignment() }

var _ dma.Mapper = (*Container)(nil)

// mapDMA issues VFIO_IOMMU_MAP_DMA and returns the raw errno, for the
// model to explain. The kernel reads mem through the request's Vaddr,
// which keeps it alive.
func (c *Container) mapDMA(iova uint64, mem []byte, perm dma.Perm) error {
	m := uapi.VfioIommuType1DmaMap{Vaddr: uapi.SlicePointer(mem), Iova: iova, Size: uint64(len(mem))}
	if perm&dma.Read != 0 {
		m.Flags |= uapi.VFIO_DMA_MAP_FLAG_READ
	}
	if perm&dma.Write != 0 {
		m.Flags |= uapi.VFIO_DMA_MAP_FLAG_WRITE
	}
	return c.fd.Do(func(fd int) error { return positiveRefusal(uapi.IoctlVfioIommuMapDma(fd, &m)) })
}

// unmapDMA issues VFIO_IOMMU_UNMAP_DMA and returns the bytes the kernel
// reports unmapped, with the raw errno.
func (c *Container) unmapDMA(iova, size uint64, flags uint32) (uint64, error) {
	u := uapi.VfioIommuType1DmaUnmap{Iova: iova, Size: size, Flags: flags}
	err := c.fd.Do(func(fd int) error { return positiveRefusal(uapi.IoctlVfioIommuUnmapDma(fd, &u)) })
	return u.Size, err
}

// dmaCall names a map or unmap of [iova, iova+size) for its error.
func (c *Container) dmaCall(op string, iova, size uint64, hints kernel.Hints) kernel.Call {
	return kernel.Call{Op: op, Object: c.fd.Name(), Args: fmt.Sprintf("iova=%#x size=%#x", iova, size), Hints: hints}
}

// The DMA requests of a container.
const (
	opMapDMA   = "VFIO_IOMMU_MAP_DMA"
	opUnmapDMA = "VFIO_IOMMU_UNMAP_DMA"
)

// positiveRefusal turns a positive ioctl result without errno into
// errTCEParam: SPAPR TCE refuses a map or unmap whose IOVA fails its
// parameter check that way (type1 and iommufd return 0 on success).
func positiveRefusal(r int, err error) error {
	if err == nil && r > 0 {
		return errTCEParam
	}
	return err
}

// errTCEParam is how a SPAPR TCE container refuses a map or unmap whose
// IOVA or address fails its parameter check: the ioctl returns 1 with no
// errno (iommu_tce_put_param_check is a boolean macro that Linux 6.12
// passes on as the result). It matches unix.EINVAL.
var errTCEParam error = tceParamError{}

type tceParamError struct{}

func (tceParamError) Error() string { return "invalid argument (the ioctl returned 1)" }
func (tceParamError) Unwrap() error { return unix.EINVAL }

// noModel is a container without a translating model: before SetIOMMU,
// or in no-IOMMU mode. Every Mapper call is refused.
type noModel struct {
	c *Container
	t IOMMUType
}

func (n noModel) refuse(op string) error {
	why := "no IOMMU model is set: SetIOMMU first"
	if n.t == NoIOMMU {
		why = "a no-IOMMU container translates nothing: the device DMAs to physical addresses"
	}
	return kernel.Call{Op: op, Object: n.c.fd.Name()}.Refuse(unix.EINVAL, why)
}

func (n noModel) Map(uint64, []byte, dma.Perm) error { return n.refuse(opMapDMA) }
func (n noModel) Unmap(uint64, uint64) error         { return n.refuse(opUnmapDMA) }
func (n noModel) UnmapAll() (uint64, error)          { return 0, n.refuse(opUnmapDMA) }
func (n noModel) IOVARanges() ([]dma.Range, error)   { return nil, n.refuse("VFIO_IOMMU_GET_INFO") }
func (n noModel) Alignment() (uint64, error)         { return 0, n.refuse("VFIO_IOMMU_GET_INFO") }
