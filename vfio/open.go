package vfio

import (
	"errors"
	"fmt"
	"os"

	"github.com/vfioctl/vfioctl/dma"
	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/internal/sysfs"
	"github.com/vfioctl/vfioctl/ioasid"
)

// Backend is a way to reach a device and its IOMMU.
type Backend int

const (
	// Auto picks the best available: Cdev, else GroupIOMMUFD, else Legacy.
	Auto Backend = iota
	// Cdev: the device's own char device bound to /dev/iommu and attached
	// to a fresh IOAS (Linux 6.6, VFIO_DEVICE_CDEV). No group, no container.
	Cdev
	// GroupIOMMUFD: the group attached to /dev/iommu in place of a
	// container; mappings go to iommufd's compat IOAS (Linux 6.2).
	GroupIOMMUFD
	// IOMMUFDCompat: /dev/iommu opened as a container and driven with the
	// type1 ioctls iommufd answers.
	IOMMUFDCompat
	// Legacy: /dev/vfio/vfio with a type1 IOMMU. On kernels built with
	// IOMMUFD_VFIO_CONTAINER that node is iommufd's compat container.
	Legacy
)

var backendNames = map[Backend]string{Auto: "auto", Cdev: "cdev", GroupIOMMUFD: "group-iommufd", IOMMUFDCompat: "iommufd-compat", Legacy: "legacy"}

func (b Backend) String() string {
	if n, ok := backendNames[b]; ok {
		return n
	}
	return fmt.Sprintf("Backend(%d)", int(b))
}

// ParseBackend is the inverse of Backend.String.
func ParseBackend(s string) (Backend, error) {
	for b, n := range backendNames {
		if n == s {
			return b, nil
		}
	}
	return 0, fmt.Errorf("vfio: unknown backend %q (auto, cdev, group-iommufd, iommufd-compat, legacy)", s)
}

// Options tune Open.
type Options struct {
	Backend Backend
	// IOMMU is the type1 model for Legacy and IOMMUFDCompat (0: best).
	IOMMU IOMMUType
}

// Handle is an opened device with the Mapper that programs its IOMMU. The
// caller uses Device and Mapper and never needs to know which backend it got.
type Handle struct {
	Device  *Device
	Mapper  dma.Mapper
	Backend Backend
	// Exactly one of these is set by the backend.
	Container *Container
	Group     *Group
	IOMMUFD   *ioasid.FD
	IOAS      *ioasid.IOAS
	DevID     uint32 // iommufd device id (Cdev)
	closers   []func() error
}

// Close closes the device and everything Open opened for it, newest first.
func (h *Handle) Close() error {
	var errs []error
	for i := len(h.closers) - 1; i >= 0; i-- {
		errs = append(errs, h.closers[i]())
	}
	h.closers = nil
	return errors.Join(errs...)
}

// Open opens the PCI device bdf (bound to vfio-pci) through the chosen
// backend, with a fresh IOMMU context and nothing mapped.
func Open(bdf string, opts *Options) (*Handle, error) {
	if opts == nil {
		opts = &Options{}
	}
	b := opts.Backend
	if b == Auto {
		b = bestBackend(bdf)
	}
	h := &Handle{Backend: b}
	var err error
	switch b {
	case Cdev:
		err = h.openCdev(bdf)
	case GroupIOMMUFD:
		err = h.openGroupIOMMUFD(bdf)
	case IOMMUFDCompat:
		err = h.openContainer(bdf, ioasid.Path, opts.IOMMU)
	case Legacy:
		err = h.openContainer(bdf, ContainerPath, opts.IOMMU)
	default:
		err = fmt.Errorf("vfio: unknown backend %v", b)
	}
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("open %s via %s: %w", bdf, b, err)
	}
	return h, nil
}

func bestBackend(bdf string) Backend {
	_, iommufdErr := os.Stat(ioasid.Path)
	if iommufdErr == nil && sysfs.DeviceCdev(bdf) != "" {
		return Cdev
	}
	if iommufdErr == nil {
		return GroupIOMMUFD
	}
	return Legacy
}

func (h *Handle) push(f func() error) { h.closers = append(h.closers, f) }

func (h *Handle) openCdev(bdf string) error {
	path, err := CdevPath(bdf)
	if err != nil {
		return err
	}
	if h.IOMMUFD, err = ioasid.Open(); err != nil {
		return err
	}
	h.push(h.IOMMUFD.Close)
	if h.Device, err = OpenCdev(path); err != nil {
		return err
	}
	h.Device.name = bdf
	h.push(h.Device.Close)
	if h.DevID, err = h.Device.BindIOMMUFD(h.IOMMUFD); err != nil {
		return err
	}
	if h.IOAS, err = h.IOMMUFD.AllocIOAS(); err != nil {
		return err
	}
	if _, err := h.Device.AttachPT(h.IOAS.ID()); err != nil {
		return err
	}
	// Closing the device fd detaches it; the IOAS goes with the iommufd.
	h.Mapper = h.IOAS
	return nil
}

func (h *Handle) openGroup(bdf string) error {
	n, err := sysfs.DeviceGroup(bdf)
	if err != nil {
		return &kernel.Error{Op: "find IOMMU group", Object: bdf, Err: err, Hint: "is the IOMMU enabled and the device present?"}
	}
	if h.Group, err = OpenGroup(n); err != nil {
		return err
	}
	h.push(h.Group.Close)
	return nil
}

func (h *Handle) openGroupIOMMUFD(bdf string) error {
	if err := h.openGroup(bdf); err != nil {
		return err
	}
	var err error
	if h.IOMMUFD, err = ioasid.Open(); err != nil {
		return err
	}
	h.push(h.IOMMUFD.Close)
	if err := h.Group.SetContainer(h.IOMMUFD); err != nil {
		return err
	}
	h.push(h.Group.UnsetContainer)
	if h.Device, err = h.Group.Device(bdf); err != nil {
		return err
	}
	h.push(h.Device.Close)
	if h.IOAS, err = h.IOMMUFD.CompatIOAS(); err != nil {
		return err
	}
	h.Mapper = h.IOAS
	return nil
}

func (h *Handle) openContainer(bdf, path string, t IOMMUType) error {
	if err := h.openGroup(bdf); err != nil {
		return err
	}
	var err error
	if h.Container, err = OpenContainerPath(path); err != nil {
		return err
	}
	h.push(h.Container.Close)
	if err := h.Group.SetContainer(h.Container); err != nil {
		return err
	}
	h.push(h.Group.UnsetContainer)
	if err := h.Container.SetIOMMU(t); err != nil {
		return err
	}
	if h.Device, err = h.Group.Device(bdf); err != nil {
		return err
	}
	h.push(h.Device.Close)
	h.Mapper = h.Container
	return nil
}
