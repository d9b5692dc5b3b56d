package vfio

// What Open chooses from: the backends, the options, and the chooser. Each
// backend lives in a file of its own (backend_*.go) behind the backend
// interface of handle.go.

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

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

// ParseBackend is the inverse of Backend.String. It also reads "iommufd"
// as Cdev: the word the device plugin and CDI specs use for the cdev and
// /dev/iommu nodes (VFIOCTL_BACKEND), so one vocabulary serves both.
func ParseBackend(s string) (Backend, error) {
	if s == "iommufd" {
		return Cdev, nil
	}
	for b, n := range backendNames {
		if n == s {
			return b, nil
		}
	}
	return 0, fmt.Errorf("vfio: unknown backend %q (auto, cdev or iommufd, group-iommufd, iommufd-compat, legacy)", s)
}

// hasContainer: the backend drives a container (the IOMMU model option
// means something).
func (b Backend) hasContainer() bool { return b == Legacy || b == IOMMUFDCompat }

// makesIOMMUFD: the backend opens an iommufd of its own (the accounting
// option means something).
func (b Backend) makesIOMMUFD() bool { return b == Cdev || b == GroupIOMMUFD }

// Options tune Open.
type Options struct {
	Backend Backend
	// IOMMU is the container model for Legacy and IOMMUFDCompat (0: the
	// best the container offers: type1v2, or SPAPRTCEv2 on POWER). Set
	// with Auto, it picks Legacy; with another backend it is an error.
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
	// Handle to a VMM process (Send). It needs CAP_SYS_RESOURCE. Set with
	// Auto it picks the best iommufd backend; with a container backend, or
	// with Join (whose iommufd exists already), it is an error.
	RlimitPerProcess bool
	// NoIOMMU allows opening a device VFIO put in a no-IOMMU group
	// (vfio.enable_unsafe_noiommu_mode): there is no translation, so the
	// Handle has no Mapper and the device DMAs to physical addresses
	// (dma.Buffer.PhysAddr); there is no isolation either. It needs
	// CAP_SYS_RAWIO. Without it such a device is refused. Every backend
	// offers the mode; Auto picks Legacy for it, the one container every
	// kernel with no-IOMMU mode has.
	NoIOMMU bool
	// VFToken opens a virtual function whose physical function is on
	// vfio-pci: the token the PF's user set (Device.SetVFToken). The group
	// backends present it to GET_DEVICE_FD; the cdev path of Linux 6.12
	// takes no token and checks none, so with Cdev it is an error.
	VFToken *VFToken
}

// check refuses options that mean nothing for backend b, before anything
// is opened.
func (o *Options) check(bdf string, b Backend) error {
	refuse := func(why string) error {
		return kernel.Call{Op: "open", Object: bdf, Args: "backend " + b.String()}.Refuse(unix.EINVAL, why)
	}
	switch {
	case o.IOMMU != 0 && o.Join != nil:
		return refuse("Options.IOMMU with Join: the joined container's model is set already")
	case o.IOMMU != 0 && !b.hasContainer():
		return refuse("Options.IOMMU is a container model, and this backend has no container")
	case o.RlimitPerProcess && o.Join != nil:
		return refuse("Options.RlimitPerProcess with Join: the joined iommufd exists already, and its accounting mode is fixed")
	case o.RlimitPerProcess && !b.makesIOMMUFD():
		return refuse("Options.RlimitPerProcess sets the accounting of an iommufd Open creates, and this backend creates none (use cdev or group-iommufd)")
	case o.VFToken != nil && b == Cdev:
		return refuse("Options.VFToken: a device cdev takes no VF token (Linux 6.12 checks none on that path); use a group backend")
	}
	return nil
}

// Offer says whether this machine offers a backend for a device, and if
// not, why.
type Offer struct {
	Backend Backend `json:"backend"`
	OK      bool    `json:"ok"`
	Why     string  `json:"why,omitempty"` // when not OK: what is missing
}

// Offers says which backends work here for the device bdf (bound to
// vfio-pci), or for the machine when bdf is "", and why the others do not:
// best first, the order Auto tries them in. It reads sysfs and /dev and
// opens nothing, so Open, the CDI spec writer, the device plugin and
// vfioctl doctor all decide the same way.
func Offers(bdf string) []Offer {
	if spaprPlatform {
		return []Offer{
			{Backend: Legacy, OK: exists(ContainerPath), Why: missing(ContainerPath, "the kernel lacks CONFIG_VFIO_CONTAINER")},
			{Backend: Cdev, Why: spaprNoIOMMUFD}, {Backend: GroupIOMMUFD, Why: spaprNoIOMMUFD}, {Backend: IOMMUFDCompat, Why: spaprNoIOMMUFD},
		}
	}
	iommufd := exists(ioasid.Path)
	noIOMMUFD := missing(ioasid.Path, "the kernel lacks CONFIG_IOMMUFD (Linux 6.2)")
	cdev := Offer{Backend: Cdev, OK: iommufd}
	switch {
	case !iommufd:
		cdev.Why = noIOMMUFD
	case bdf == "" && !cdevKernel():
		cdev.OK, cdev.Why = false, "no device cdevs: the kernel lacks CONFIG_VFIO_DEVICE_CDEV (Linux 6.6)"
	case bdf != "" && sysfs.DeviceCdev(bdf) == "":
		cdev.OK = false
		if _, err := CdevPath(bdf); err != nil {
			cdev.Why = err.Error()
		}
	}
	return []Offer{
		cdev,
		{Backend: GroupIOMMUFD, OK: iommufd, Why: noIOMMUFD},
		{Backend: Legacy, OK: exists(ContainerPath), Why: missing(ContainerPath, "the kernel lacks CONFIG_VFIO_CONTAINER")},
		{Backend: IOMMUFDCompat, OK: iommufd, Why: noIOMMUFD},
	}
}

func exists(path string) bool { _, err := os.Stat(path); return err == nil }

// cdevKernel reports whether the kernel gives VFIO devices cdevs
// (VFIO_DEVICE_CDEV, Linux 6.6), for a machine rather than one device: a
// vfio-dev class device with a char device number says so; otherwise the
// version decides, since Linux 6.1 to 6.5 register the vfio-dev class
// without cdevs (and 6.12 lists no-IOMMU devices there without one).
func cdevKernel() bool {
	devs, _ := filepath.Glob("/sys/class/vfio-dev/*")
	for _, d := range devs {
		if exists(filepath.Join(d, "dev")) {
			return true
		}
	}
	return exists("/sys/class/vfio-dev") && !kernel.Before("6.6")
}

// missing is why a backend needing path is not offered, or "" when the
// path exists.
func missing(path, why string) string {
	if exists(path) {
		return ""
	}
	return "no " + path + ": " + why
}

// choose picks the backend Open uses for bdf: the option's, the joined
// Handle's, or for Auto the best offered one that the other options suit.
func choose(o *Options, noIOMMU bool, offers func() []Offer) Backend {
	if o.Join != nil {
		return o.Join.backend
	}
	if o.Backend != Auto {
		return o.Backend
	}
	suits := func(b Backend) bool {
		switch {
		case noIOMMU && o.NoIOMMU:
			return b == Legacy
		case o.IOMMU != 0:
			return b.hasContainer()
		case o.RlimitPerProcess:
			return b.makesIOMMUFD()
		case o.VFToken != nil:
			return b != Cdev
		}
		return true
	}
	for _, of := range offers() {
		if of.OK && suits(of.Backend) {
			return of.Backend
		}
	}
	return Legacy // nothing offered: opening it says why
}
