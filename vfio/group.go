package vfio

import (
	"fmt"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/internal/sysfs"
	"github.com/vfioctl/vfioctl/uapi"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// Group is a VFIO group, /dev/vfio/N: the unit of isolation the IOMMU can
// guarantee. Its methods are safe for concurrent use; after Close every one
// fails with ErrClosed.
type Group struct {
	fd *kernel.FD
	id int
	// onIOMMUFD: SetContainer attached the group to an iommufd (for the
	// error POWER gives when a device of it is then opened).
	onIOMMUFD atomic.Bool
}

// GroupPath is the device node of group n: /dev/vfio/N, or
// /dev/vfio/noiommu-N for a group in no-IOMMU mode.
func GroupPath(n int) string { return sysfs.GroupNode(n) }

// OpenGroup opens /dev/vfio/N.
func OpenGroup(n int) (*Group, error) {
	fd, err := kernel.OpenPath(GroupPath(n), kernel.Hints{unix.ENOENT: func() string { return fmt.Sprintf("no device of IOMMU group %d is bound to vfio-pci", n) }})
	if err != nil {
		return nil, err
	}
	return &Group{fd: fd, id: n}, nil
}

// NewGroup takes ownership of a pre-opened fd of group id (the fd cannot
// tell its number).
func NewGroup(fd, id int) (*Group, error) {
	f, err := kernel.NewFD(fd, GroupPath(id))
	if err != nil {
		return nil, err
	}
	return &Group{fd: f, id: id}, nil
}

// ID is the group number.
func (g *Group) ID() int { return g.id }

// FD is the group's descriptor (for hot reset ownership proofs). It stays
// owned by the group.
func (g *Group) FD() (int, error) { return g.fd.Int() }

// Dup returns a new descriptor for the group, owned by the caller.
func (g *Group) Dup() (int, error) { return g.fd.Dup() }

// Close releases the group; devices opened from it stay usable. A second
// Close fails with ErrClosed.
func (g *Group) Close() error { return g.fd.Close() }

// GroupStatus is VFIO_GROUP_GET_STATUS.
type GroupStatus struct {
	Viable       bool // every device is bound to a VFIO-compatible driver
	ContainerSet bool
}

// Status is VFIO_GROUP_GET_STATUS.
func (g *Group) Status() (GroupStatus, error) {
	var s uapi.VfioGroupStatus
	if err := g.fd.Ioctl(kernel.Call{Op: "VFIO_GROUP_GET_STATUS"}, func(fd int) error { return uapi.IoctlVfioGroupGetStatus(fd, &s) }); err != nil {
		return GroupStatus{}, err
	}
	return GroupStatus{
		Viable:       s.Flags&uapi.VFIO_GROUP_FLAGS_VIABLE != 0,
		ContainerSet: s.Flags&uapi.VFIO_GROUP_FLAGS_CONTAINER_SET != 0,
	}, nil
}

// CheckViable returns a *vfioerr.GroupNotViableError naming the blocking
// devices when the group is not viable.
func (g *Group) CheckViable() error {
	st, err := g.Status()
	if err != nil {
		return err
	}
	if st.Viable {
		return nil
	}
	blockers, _ := sysfs.GroupBlockers(g.id)
	return &vfioerr.GroupNotViableError{Group: g.id, Blockers: blockers}
}

// FDer is anything with a file descriptor it keeps owning: a *Container,
// an *ioasid.FD (iommufd) used as a container, an *Eventfd.
type FDer interface {
	FD() (int, error)
}

// SetContainer is VFIO_GROUP_SET_CONTAINER. c is a legacy *Container or an
// iommufd (*ioasid.FD): the kernel accepts both, and with an iommufd the
// group's devices use its compat IOAS. The group must be viable.
func (g *Group) SetContainer(c FDer) error {
	if err := g.CheckViable(); err != nil {
		return err
	}
	cfd, err := c.FD()
	if err != nil {
		return err
	}
	fd32 := int32(cfd)
	hints := setContainerHints
	if spaprPlatform && !isContainer(c) {
		hints = spaprIOMMUFDHints
	}
	err = g.fd.Ioctl(kernel.Call{Op: "VFIO_GROUP_SET_CONTAINER", Args: fmt.Sprintf("container fd %d", cfd), Hints: hints}, func(fd int) error {
		_, err := uapi.IoctlVfioGroupSetContainer(fd, &fd32)
		return err
	})
	if err == nil {
		g.onIOMMUFD.Store(!isContainer(c))
	}
	return err
}

func isContainer(c FDer) bool {
	_, ok := c.(*Container)
	return ok
}

// setContainerHints explain VFIO_GROUP_SET_CONTAINER's errnos.
var setContainerHints = kernel.Hints{
	unix.EBUSY: kernel.Say("the group already has a container"),
	unix.EPERM: unsafeInterruptsHint,
}

// spaprIOMMUFDHints say, for every errno, why a group on POWER cannot use
// /dev/iommu.
var spaprIOMMUFDHints = kernel.Hints{
	unix.EINVAL: spaprIOMMUFDHint, unix.EPERM: spaprIOMMUFDHint, unix.EBUSY: spaprIOMMUFDHint,
	unix.ENODEV: spaprIOMMUFDHint, unix.ENOTTY: spaprIOMMUFDHint, unix.EOPNOTSUPP: spaprIOMMUFDHint,
}

func spaprIOMMUFDHint() string {
	return "on POWER a group works only in a SPAPR TCE container: " + spaprNoIOMMUFD
}

// UnsetContainer is VFIO_GROUP_UNSET_CONTAINER.
func (g *Group) UnsetContainer() error {
	return g.fd.Ioctl(kernel.Call{Op: "VFIO_GROUP_UNSET_CONTAINER"}, func(fd int) error {
		_, err := uapi.IoctlVfioGroupUnsetContainer(fd)
		return err
	})
}

// Device is VFIO_GROUP_GET_DEVICE_FD: opens the device named (for PCI, its
// address such as 0000:00:03.0). The group must have a container with an
// IOMMU set.
func (g *Group) Device(name string) (*Device, error) { return g.device(name, name) }

// device issues GET_DEVICE_FD with arg: the name, and for a VF its token.
func (g *Group) device(name, arg string) (*Device, error) {
	if name == "" || strings.ContainsRune(name, 0) || len(name) > 64 {
		return nil, kernel.Call{Op: "VFIO_GROUP_GET_DEVICE_FD", Object: g.fd.Name(), Args: fmt.Sprintf("%q", name)}.Refuse(unix.EINVAL, "not a device name")
	}
	var raw int
	err := g.fd.Ioctl(kernel.Call{Op: "VFIO_GROUP_GET_DEVICE_FD", Args: name, Hints: g.deviceHints(name, arg != name)}, func(fd int) (err error) {
		raw, err = uapi.IoctlVfioGroupGetDeviceFd(fd, arg)
		return err
	})
	if err != nil {
		return nil, err
	}
	return newDevice(raw, name)
}

// deviceHints explain GET_DEVICE_FD's errnos for the device name, opened
// with a VF token or without.
func (g *Group) deviceHints(name string, token bool) kernel.Hints {
	if spaprPlatform && g.onIOMMUFD.Load() {
		return spaprIOMMUFDHints
	}
	noContainer := func() string {
		if devs, _ := sysfs.GroupDevices(g.id); len(devs) > 0 {
			return fmt.Sprintf("group %d holds %s and needs a container with an IOMMU set", g.id, strings.Join(devs, ", "))
		}
		return ""
	}
	return kernel.Hints{
		unix.EPERM:  unsafeInterruptsHint,
		unix.EACCES: func() string { return vfTokenHint(name, token) },
		unix.ENODEV: noContainer,
		unix.EINVAL: func() string {
			if token && sysfs.PhysFn(name) == "" && !sysfs.IsPF(name) {
				return fmt.Sprintf("a VF token was given, but %s is neither an SR-IOV physical function nor a virtual function, and the kernel takes a token for no other device: open it without one (Options.VFToken, --vf-token)", name)
			}
			return noContainer()
		},
	}
}
