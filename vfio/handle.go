package vfio

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/dma"
	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/internal/sysfs"
	"github.com/vfioctl/vfioctl/ioasid"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// Handle is an opened device with the Mapper that programs its IOMMU. The
// caller uses Device and Mapper and never needs to know which backend it
// got. The other methods give what the backend uses, for callers that need
// it, and nil (0 for DevID) where the backend uses none:
//
//	backend         Container  Group  IOMMUFD  IOAS               DevID
//	Legacy          yes        yes    -        -                  -
//	IOMMUFDCompat   yes        yes    -        -                  -
//	GroupIOMMUFD    -          yes    yes      the compat IOAS    -
//	Cdev            -          -      yes      an allocated IOAS  yes
//
// They belong to the Handle (and to the Handles that joined it): use them,
// do not Close them.
type Handle struct {
	device    *Device
	mapper    dma.Mapper
	backend   Backend
	container *Container
	group     *Group
	iommufd   *ioasid.FD
	ioas      *ioasid.IOAS
	devID     uint32
	noIOMMU   bool

	space   *space
	groupID int // the group this Handle holds a reference on, or -1
	mu      sync.Mutex
	closed  bool
}

// space is an IOMMU context shared by the Handles opened into it: one
// backend's kernel objects.
type space struct {
	mu   sync.Mutex
	refs int
	b    backend
}

// backend is one way to reach devices and their IOMMU; each lives in a
// file of its own (backend_container.go, backend_spapr.go,
// backend_group_iommufd.go, backend_cdev.go). Its methods run with the
// space locked.
type backend interface {
	// open opens bdf into the space, making the space's kernel objects
	// if it is the first device, and sets h.device (and h.devID,
	// h.groupID where the backend has them).
	open(h *Handle, bdf string, o *Options) error
	// mapper is the space's Mapper; nil in no-IOMMU mode.
	mapper() dma.Mapper
	// expose fills the Handle's exported views of the space.
	expose(h *Handle)
	// hotReset resets d by its bus or slot with the dependents deps,
	// proving ownership the backend's way, or names those not owned here.
	hotReset(d *Device, deps []Dependent) error
	// describe lists the space's descriptors for Send.
	describe(hdr *handoff, add func(role string, d duper))
	// release drops h's reference on what it holds alone (its group).
	release(h *Handle) []error
	// close releases the space's kernel objects once no Handle uses them.
	close() []error
}

type duper interface{ Dup() (int, error) }

// newBackend is the empty backend b; on POWER the container is SPAPR TCE's
// and the other backends do not exist.
func newBackend(b Backend, noIOMMU bool) (backend, error) {
	if spaprPlatform && b != Legacy {
		return nil, spaprOnlyLegacy(b)
	}
	switch b {
	case Legacy, IOMMUFDCompat:
		path := ContainerPath
		if b == IOMMUFDCompat {
			path = ioasid.Path
		}
		if spaprPlatform {
			return &spaprBackend{containerBackend{kind: b, path: path, noIOMMU: noIOMMU}}, nil
		}
		return &containerBackend{kind: b, path: path, noIOMMU: noIOMMU}, nil
	case GroupIOMMUFD:
		return &groupIOMMUFDBackend{noIOMMU: noIOMMU}, nil
	case Cdev:
		return &cdevBackend{noIOMMU: noIOMMU}, nil
	}
	return nil, fmt.Errorf("unknown backend %s", b)
}

// Open opens the device named bdf through the chosen backend: a PCI
// function bound to vfio-pci, by its address, or a mediated device, by its
// UUID (package mdev makes them; each is alone in a group of its own and
// has its own cdev, and reaches an IOAS through iommufd's emulated access
// path). It opens the device into a fresh IOMMU context with nothing mapped, or, with
// opts.Join, into the context of an open Handle. Options that mean nothing
// for the backend are refused (EINVAL) before anything is opened.
func Open(bdf string, opts *Options) (*Handle, error) {
	return open(bdf, opts, func() []Offer { return Offers(bdf) }, newBackend)
}

// open is Open with the machine's offers and the backends given, so that
// a test can give fakes.
func open(bdf string, opts *Options, offers func() []Offer, newBackend func(Backend, bool) (backend, error)) (*Handle, error) {
	if opts == nil {
		opts = &Options{}
	}
	call := kernel.Call{Op: "open", Object: bdf, Args: "join"}
	if j := opts.Join; j != nil {
		if j.isClosed() {
			return nil, call.Fail(vfioerr.ErrClosed)
		}
		if opts.Backend != Auto && opts.Backend != j.backend {
			return nil, call.Refuse(unix.EINVAL, fmt.Sprintf("backend %s asked, but the space joined is %s", opts.Backend, j.backend))
		}
	}
	noIOMMU := sysfs.NoIOMMUDevice(bdf)
	if noIOMMU && !opts.NoIOMMU {
		return nil, kernel.Call{Op: "open", Object: bdf}.Refuse(vfioerr.ErrNotSupported,
			"the device has no IOMMU (VFIO no-IOMMU mode: no isolation, no translation); set Options.NoIOMMU to use it anyway")
	}
	b := choose(opts, noIOMMU, offers)
	if err := opts.check(bdf, b); err != nil {
		return nil, err
	}
	sp := &space{}
	if opts.Join != nil {
		sp = opts.Join.space
	} else {
		impl, err := newBackend(b, noIOMMU)
		if err != nil {
			return nil, fmt.Errorf("open %s via %s: %w", bdf, b, err)
		}
		sp.b = impl
	}
	h := &Handle{backend: b, space: sp, groupID: -1, noIOMMU: noIOMMU}
	sp.mu.Lock()
	if opts.Join != nil && sp.refs == 0 { // its last Handle closed meanwhile
		sp.mu.Unlock()
		return nil, call.Fail(vfioerr.ErrClosed)
	}
	sp.refs++
	err := sp.b.open(h, bdf, opts)
	h.mapper = sp.b.mapper()
	sp.b.expose(h)
	sp.mu.Unlock()
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("open %s via %s: %w", bdf, b, err)
	}
	return h, nil
}

// Device is the opened device.
func (h *Handle) Device() *Device { return h.device }

// Mapper programs the device's IOMMU; nil in no-IOMMU mode.
func (h *Handle) Mapper() dma.Mapper { return h.mapper }

// Backend is the backend Open chose.
func (h *Handle) Backend() Backend { return h.backend }

// NoIOMMU reports VFIO's no-IOMMU mode: there is no Mapper and the device
// DMAs to physical addresses (dma.Buffer.PhysAddr).
func (h *Handle) NoIOMMU() bool { return h.noIOMMU }

// Container is the container of the Legacy and IOMMUFDCompat backends; nil
// for the others.
func (h *Handle) Container() *Container { return h.container }

// Group is the device's group on the group backends (Legacy,
// IOMMUFDCompat, GroupIOMMUFD); nil on Cdev.
func (h *Handle) Group() *Group { return h.group }

// IOMMUFD is the iommufd of the GroupIOMMUFD and Cdev backends; nil for the
// container backends.
func (h *Handle) IOMMUFD() *ioasid.FD { return h.iommufd }

// IOAS is the address space the Mapper maps into on the iommufd backends:
// the iommufd's compat IOAS (GroupIOMMUFD) or one allocated for the space
// (Cdev); nil for the container backends and in no-IOMMU mode.
func (h *Handle) IOAS() *ioasid.IOAS { return h.ioas }

// DevID is the iommufd device id of the Cdev backend (for
// VFIO_DEVICE_PCI_HOT_RESET_INFO's answers and ioasid's per-device calls);
// 0 for the others.
func (h *Handle) DevID() uint32 { return h.devID }

func (h *Handle) isClosed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}

// spaprNoIOMMUFD is why POWER has no iommufd backend.
const spaprNoIOMMUFD = "the SPAPR TCE IOMMU allocates no iommufd paging domain, so no device can attach to an IOAS, and the kernel builds no device cdev with SPAPR_TCE_IOMMU (VFIO_DEVICE_CDEV depends on !SPAPR_TCE_IOMMU); use the legacy backend (SPAPR TCE container)"

// spaprOnlyLegacy refuses backend b on POWER, saying why.
func spaprOnlyLegacy(b Backend) error {
	return &vfioerr.NotSupportedError{Feature: "the " + b.String() + " backend on POWER", Reason: spaprNoIOMMUFD}
}

// Close closes the device, then whatever no other Handle shares: its group
// (detached from the container) and the container, iommufd and IOAS. A
// second Close fails with ErrClosed.
func (h *Handle) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return kernel.Call{Op: "close", Object: "vfio handle"}.Fail(vfioerr.ErrClosed)
	}
	h.closed = true
	var errs []error
	if h.device != nil {
		errs = append(errs, h.device.Close())
	}
	sp := h.space
	sp.mu.Lock()
	defer sp.mu.Unlock()
	errs = append(errs, sp.b.release(h)...)
	if sp.refs--; sp.refs == 0 {
		errs = append(errs, sp.b.close()...)
	}
	return errors.Join(errs...)
}

// HotReset resets the Handle's device by its bus or slot, with every
// device that reset affects. They must all be owned by this process: on the
// group path their groups must be among the Handle's (Options.Join opens
// more devices into it); on the cdev path they must be bound to its
// iommufd. If one is not, nothing is reset and the error names it.
func (h *Handle) HotReset() error {
	deps, err := h.device.HotResetInfo()
	if err != nil {
		return err
	}
	h.space.mu.Lock()
	defer h.space.mu.Unlock()
	return h.space.b.hotReset(h.device, deps)
}

// notOwned is the error of a hot reset that would reset devices this
// process does not own.
func notOwned(d *Device, missing []string) error {
	return kernel.Call{Op: "VFIO_DEVICE_PCI_HOT_RESET", Object: d.Name()}.Refuse(unix.EPERM,
		"the reset would also reset "+strings.Join(missing, ", ")+", which this process does not own")
}

// deviceGroup is the IOMMU group of bdf, or an error saying it has none.
func deviceGroup(bdf string) (int, error) {
	n, err := sysfs.DeviceGroup(bdf)
	if err != nil {
		return -1, kernel.Call{Op: "find IOMMU group", Object: bdf}.Refuse(err, "is the IOMMU enabled and the device present?")
	}
	return n, nil
}

// iommufdSpace is what the iommufd backends (GroupIOMMUFD, Cdev) hold: the
// iommufd, and the IOAS their Mapper maps into (none in no-IOMMU mode).
type iommufdSpace struct {
	fd   *ioasid.FD
	ioas *ioasid.IOAS
}

func (s *iommufdSpace) mapper() dma.Mapper {
	if s.ioas == nil {
		return nil
	}
	return s.ioas
}

func (s *iommufdSpace) close() []error {
	var errs []error
	if s.ioas != nil {
		errs = append(errs, s.ioas.Close())
	}
	if s.fd != nil {
		errs = append(errs, s.fd.Close())
	}
	return errs
}

// openIOMMUFD opens /dev/iommu for a new space, with the accounting mode
// asked for (which the kernel accepts only before any object exists).
func openIOMMUFD(perProcess bool) (*ioasid.FD, error) {
	fd, err := ioasid.Open()
	if err != nil || !perProcess {
		return fd, err
	}
	if err := fd.SetRlimitPerProcess(true); err != nil {
		fd.Close()
		return nil, err
	}
	return fd, nil
}
