package vfio

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/dma"
	"github.com/vfioctl/vfioctl/internal/sysfs"
	"github.com/vfioctl/vfioctl/ioasid"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// Backend is a way to reach a device and its IOMMU.
type Backend int

const (
	// Auto picks the best available: Cdev, else GroupIOMMUFD, else Legacy.
	Auto Backend = iota
	// Cdev: the device's own char device bound to /dev/iommu and attached
	// to an IOAS (Linux 6.6, VFIO_DEVICE_CDEV). No group, no container.
	Cdev
	// GroupIOMMUFD: the group attached to /dev/iommu in place of a
	// container; mappings go to iommufd's compat IOAS (Linux 6.2).
	GroupIOMMUFD
	// IOMMUFDCompat: /dev/iommu opened as a container and driven with the
	// type1 ioctls iommufd answers.
	IOMMUFDCompat
	// Legacy: /dev/vfio/vfio with a type1 IOMMU. On kernels built with
	// IOMMUFD_VFIO_CONTAINER that node is iommufd's compat container. On
	// POWER its model is SPAPR TCE (v2 unless Options.IOMMU says v1), the
	// only backend there: the other three are ErrNotSupported.
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
	// IOMMU is the container model for Legacy and IOMMUFDCompat (0: the
	// best the container offers: type1v2, or SPAPRTCEv2 on POWER).
	IOMMU IOMMUType
	// Join opens the device into the address space of an open Handle: its
	// Container, its iommufd's compat IOAS, or its IOAS, so one Mapper and
	// one set of mappings serve every device opened into it. The backend is
	// Join's (Backend must be Auto or the same). The shared container,
	// iommufd, IOAS and groups stay open until the last Handle using them
	// is closed.
	Join *Handle
	// RlimitPerProcess makes the iommufd that Open creates (Cdev,
	// GroupIOMMUFD) count pinned pages against the RLIMIT_MEMLOCK of the
	// process that maps them, not of its user: the mode for handing the
	// Handle to a VMM process (Send). It needs CAP_SYS_RESOURCE.
	RlimitPerProcess bool
	// NoIOMMU allows opening a device VFIO put in a no-IOMMU group
	// (vfio.enable_unsafe_noiommu_mode): there is no translation, so the
	// Handle has no Mapper and the device DMAs to physical addresses
	// (dma.Buffer.PhysAddr); there is no isolation either. It needs
	// CAP_SYS_RAWIO. Without it such a device is refused.
	NoIOMMU bool
	// VFToken opens a virtual function whose physical function is on
	// vfio-pci: the token the PF's user set (Device.SetVFToken). The group
	// path presents it to GET_DEVICE_FD; the cdev path of Linux 6.12 takes
	// no token and checks none.
	VFToken *VFToken
}

// Handle is an opened device with the Mapper that programs its IOMMU. The
// caller uses Device and Mapper and never needs to know which backend it
// got. The other fields show what the backend uses, for callers that need
// it (nil where the backend uses none):
//
//	backend         Container  Group  IOMMUFD  IOAS
//	Legacy          yes        yes    -        -
//	IOMMUFDCompat   yes        yes    -        -
//	GroupIOMMUFD    -          yes    yes      the compat IOAS
//	Cdev            -          -      yes      an allocated IOAS
//
// They belong to the Handle (and to the Handles that joined it): use them,
// do not Close them.
type Handle struct {
	Device    *Device
	Mapper    dma.Mapper
	Backend   Backend
	Container *Container
	Group     *Group
	IOMMUFD   *ioasid.FD
	IOAS      *ioasid.IOAS
	DevID     uint32 // iommufd device id (Cdev)
	// NoIOMMU: the device is in VFIO's no-IOMMU mode; Mapper is nil and
	// DMA goes to physical addresses.
	NoIOMMU bool

	space            *space
	groupID          int
	rlimitPerProcess bool
	vfToken          *VFToken
	mu               sync.Mutex
	closed           bool
}

// space is an IOMMU context shared by the Handles opened into it, and the
// groups attached to it (two devices of one group share the group fd).
type space struct {
	mu        sync.Mutex
	refs      int
	container *Container
	iommufd   *ioasid.FD
	ioas      *ioasid.IOAS
	mapper    dma.Mapper
	groups    map[int]*sharedGroup
}

type sharedGroup struct {
	g        *Group
	refs     int
	attached bool // this process attached it (SetContainer), so detaches it
}

// Open opens the PCI device bdf (bound to vfio-pci) through the chosen
// backend: into a fresh IOMMU context with nothing mapped, or, with
// opts.Join, into the context of an open Handle.
func Open(bdf string, opts *Options) (*Handle, error) {
	if opts == nil {
		opts = &Options{}
	}
	var sp *space
	b := opts.Backend
	if j := opts.Join; j != nil {
		j.mu.Lock()
		closed := j.closed
		j.mu.Unlock()
		if closed {
			return nil, &vfioerr.OpError{Op: "open", Object: bdf, Args: "join", Err: vfioerr.ErrClosed}
		}
		if b != Auto && b != j.Backend {
			return nil, &vfioerr.OpError{Op: "open", Object: bdf, Args: "join", Err: unix.EINVAL,
				Hint: fmt.Sprintf("backend %s asked, but the space joined is %s", b, j.Backend)}
		}
		b, sp = j.Backend, j.space
	} else if b == Auto {
		b = bestBackend(bdf)
	}
	noIOMMU := false
	if sysfs.NoIOMMUDevice(bdf) {
		if !opts.NoIOMMU {
			return nil, &vfioerr.OpError{Op: "open", Object: bdf, Err: vfioerr.ErrNotSupported,
				Hint: "the device has no IOMMU (VFIO no-IOMMU mode: no isolation, no translation); set Options.NoIOMMU to use it anyway"}
		}
		noIOMMU = true
		if opts.Backend == Auto && opts.Join == nil {
			b = Legacy // the one container every kernel with no-IOMMU mode has
		}
	}
	if sp == nil {
		sp = &space{groups: map[int]*sharedGroup{}}
	}
	h := &Handle{Backend: b, space: sp, groupID: -1, rlimitPerProcess: opts.RlimitPerProcess, NoIOMMU: noIOMMU, vfToken: opts.VFToken}
	sp.mu.Lock()
	if opts.Join != nil && sp.refs == 0 { // its last Handle closed meanwhile
		sp.mu.Unlock()
		return nil, &vfioerr.OpError{Op: "open", Object: bdf, Args: "join", Err: vfioerr.ErrClosed}
	}
	sp.refs++
	var err error
	switch {
	case spaprPlatform && b != Legacy:
		err = spaprOnlyLegacy(b)
	case b == Cdev:
		err = h.openCdev(bdf)
	case b == GroupIOMMUFD:
		err = h.openGroupIOMMUFD(bdf)
	case b == IOMMUFDCompat:
		err = h.openContainer(bdf, ioasid.Path, opts.IOMMU)
	case b == Legacy:
		err = h.openContainer(bdf, ContainerPath, opts.IOMMU)
	default:
		err = &vfioerr.OpError{Op: "open", Object: bdf, Err: unix.EINVAL, Hint: "unknown backend " + b.String()}
	}
	h.Mapper, h.Container, h.IOMMUFD, h.IOAS = sp.mapper, sp.container, sp.iommufd, sp.ioas
	sp.mu.Unlock()
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("open %s via %s: %w", bdf, b, err)
	}
	return h, nil
}

func bestBackend(bdf string) Backend {
	if spaprPlatform {
		return Legacy
	}
	_, iommufdErr := os.Stat(ioasid.Path)
	if iommufdErr == nil && sysfs.DeviceCdev(bdf) != "" {
		return Cdev
	}
	if iommufdErr == nil {
		return GroupIOMMUFD
	}
	return Legacy
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
		return &vfioerr.OpError{Op: "close", Object: "vfio handle", Err: vfioerr.ErrClosed}
	}
	h.closed = true
	var errs []error
	if h.Device != nil {
		errs = append(errs, h.Device.Close())
	}
	sp := h.space
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sg := sp.groups[h.groupID]; sg != nil {
		if sg.refs--; sg.refs == 0 {
			delete(sp.groups, h.groupID)
			if sg.attached {
				errs = append(errs, sg.g.UnsetContainer())
			}
			errs = append(errs, sg.g.Close())
		}
	}
	if sp.refs--; sp.refs == 0 {
		if sp.ioas != nil {
			errs = append(errs, sp.ioas.Close())
		}
		if sp.iommufd != nil {
			errs = append(errs, sp.iommufd.Close())
		}
		if sp.container != nil {
			errs = append(errs, sp.container.Close())
		}
	}
	return errors.Join(errs...)
}

// deviceGroup is the IOMMU group of bdf, or an error saying it has none.
func deviceGroup(bdf string) (int, error) {
	n, err := sysfs.DeviceGroup(bdf)
	if err != nil {
		return -1, &vfioerr.OpError{Op: "find IOMMU group", Object: bdf, Err: err, Hint: "is the IOMMU enabled and the device present?"}
	}
	return n, nil
}

// checkViable refuses a device whose IOMMU group is not viable, naming the
// members that block it, before the kernel is asked (on the cdev path the
// kernel's answer, EPERM, would not say why).
func checkViable(bdf string) error {
	n, err := deviceGroup(bdf)
	if err != nil {
		return err
	}
	if blockers, err := sysfs.GroupBlockers(n); err == nil && len(blockers) > 0 {
		return &vfioerr.GroupNotViableError{Address: bdf, Group: n, Blockers: blockers}
	}
	return nil
}

// openCdev: the device's cdev bound to the space's iommufd and attached to
// its IOAS, both made now if this is the space's first device.
func (h *Handle) openCdev(bdf string) error {
	path, err := CdevPath(bdf)
	if err != nil {
		return err
	}
	if err := checkViable(bdf); err != nil {
		return err
	}
	sp := h.space
	if sp.iommufd == nil {
		if sp.iommufd, err = h.openIOMMUFD(); err != nil {
			return err
		}
		if !h.NoIOMMU {
			if sp.ioas, err = sp.iommufd.AllocIOAS(); err != nil {
				return err
			}
			sp.mapper = sp.ioas
		}
	}
	if h.Device, err = OpenCdev(path); err != nil {
		return err
	}
	h.Device.name = bdf
	if h.DevID, err = h.Device.BindIOMMUFD(sp.iommufd); err != nil {
		return err
	}
	if h.NoIOMMU {
		return nil // nothing to attach: there is no IOMMU
	}
	// Closing the device fd detaches it.
	_, err = h.Device.AttachPT(sp.ioas.ID())
	return err
}

// openIOMMUFD opens /dev/iommu for a new space, with the accounting mode
// asked for (which the kernel accepts only before any object exists).
func (h *Handle) openIOMMUFD() (*ioasid.FD, error) {
	fd, err := ioasid.Open()
	if err != nil || !h.rlimitPerProcess {
		return fd, err
	}
	if err := fd.SetRlimitPerProcess(true); err != nil {
		fd.Close()
		return nil, err
	}
	return fd, nil
}

// openGroup opens (or shares) the device's group and attaches it to the
// space's container or iommufd.
func (h *Handle) openGroup(bdf string, container FDer) error {
	n, err := deviceGroup(bdf)
	if err != nil {
		return err
	}
	sp := h.space
	if sg := sp.groups[n]; sg != nil {
		sg.refs++
		h.Group, h.groupID = sg.g, n
		return nil
	}
	g, err := OpenGroup(n)
	if err != nil {
		return err
	}
	sg := &sharedGroup{g: g, refs: 1}
	sp.groups[n] = sg
	h.Group, h.groupID = g, n
	err = g.SetContainer(container)
	var nv *vfioerr.GroupNotViableError
	if errors.As(err, &nv) {
		nv.Address = bdf
	}
	sg.attached = err == nil
	return err
}

func (h *Handle) openGroupIOMMUFD(bdf string) error {
	sp := h.space
	var err error
	if sp.iommufd == nil {
		if sp.iommufd, err = h.openIOMMUFD(); err != nil {
			return err
		}
	}
	if err := h.openGroup(bdf, sp.iommufd); err != nil {
		return err
	}
	if h.Device, err = h.groupDevice(bdf); err != nil {
		return err
	}
	if sp.ioas == nil && !h.NoIOMMU {
		if sp.ioas, err = sp.iommufd.CompatIOAS(); err != nil {
			return err
		}
		sp.mapper = sp.ioas
	}
	return nil
}

func (h *Handle) openContainer(bdf, path string, t IOMMUType) error {
	sp := h.space
	var err error
	if sp.container == nil {
		if sp.container, err = OpenContainerPath(path); err != nil {
			return err
		}
	} else if err := joinSPAPR(bdf, sp); err != nil {
		return err
	}
	if err := h.openGroup(bdf, sp.container); err != nil {
		return err
	}
	if sp.container.IOMMU() == 0 {
		if h.NoIOMMU {
			t = NoIOMMU
		}
		if err := sp.container.SetIOMMU(t); err != nil {
			return err
		}
		if sp.container.IOMMU() == SPAPRTCE {
			if err := sp.container.Enable(); err != nil {
				return err
			}
		}
		if !h.NoIOMMU {
			if sp.mapper, err = containerMapper(sp.container); err != nil {
				return err
			}
		}
	}
	h.Device, err = h.groupDevice(bdf)
	return err
}

// joinSPAPR refuses a second group in a SPAPR TCE container on pSeries:
// there each PE's DMA windows are the hypervisor's (created per PE with
// RTAS), and the kernel cannot set one group's window table into another
// (set_window is EPERM), so the first map would fail.
func joinSPAPR(bdf string, sp *space) error {
	if !sp.container.IOMMU().IsSPAPR() || !pseries() {
		return nil
	}
	n, err := deviceGroup(bdf)
	if err != nil || sp.groups[n] != nil {
		return err
	}
	return &vfioerr.NotSupportedError{Feature: "a second IOMMU group in one SPAPR TCE container on pSeries",
		Reason: "the hypervisor gives each PE (group) DMA windows of its own, which the kernel cannot share with another group: open each group into a container of its own"}
}

// containerMapper is the Mapper of a container: itself, or on SPAPR TCE
// v2 a SPAPRMapper, which registers the memory it maps.
func containerMapper(c *Container) (dma.Mapper, error) {
	if c.IOMMU() == SPAPRTCEv2 {
		return NewSPAPRMapper(c)
	}
	return c, nil
}

func (h *Handle) groupDevice(bdf string) (*Device, error) {
	if h.vfToken != nil {
		return h.Group.DeviceWithVFToken(bdf, *h.vfToken)
	}
	return h.Group.Device(bdf)
}
