package vfio

import (
	"errors"
	"fmt"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/internal/sysfs"
	"github.com/vfioctl/vfioctl/uapi"
)

// ErrGroupNotViable matches GroupNotViableError.
var ErrGroupNotViable = sysfs.ErrNotViable

// GroupNotViableError says which group members keep a group from being
// usable: each is bound to a host driver other than vfio-pci or pci-stub.
type GroupNotViableError = sysfs.NotViableError

// Group is a VFIO group, /dev/vfio/N: the unit of isolation the IOMMU can
// guarantee.
type Group struct {
	fd *kernel.FD
	id int
}

// GroupPath is the device node of group n.
func GroupPath(n int) string { return fmt.Sprintf("/dev/vfio/%d", n) }

// OpenGroup opens /dev/vfio/N.
func OpenGroup(n int) (*Group, error) {
	fd, err := kernel.OpenPath(GroupPath(n))
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			err = fmt.Errorf("%w (is a device of group %d bound to vfio-pci?)", err, n)
		}
		return nil, err
	}
	return &Group{fd: fd, id: n}, nil
}

// NewGroup takes ownership of a pre-opened group fd for group n.
func NewGroup(fd, n int) (*Group, error) {
	f, err := kernel.NewFD(fd, GroupPath(n))
	if err != nil {
		return nil, err
	}
	return &Group{fd: f, id: n}, nil
}

// ID is the group number.
func (g *Group) ID() int { return g.id }

// FD is the group's descriptor (for hot reset ownership proofs).
func (g *Group) FD() (int, error) { return g.fd.Int() }

// Close releases the group; devices opened from it stay usable.
func (g *Group) Close() error { return g.fd.Close() }

// GroupStatus is VFIO_GROUP_GET_STATUS.
type GroupStatus struct {
	Viable       bool // every device is bound to a VFIO-compatible driver
	ContainerSet bool
}

// Status is VFIO_GROUP_GET_STATUS.
func (g *Group) Status() (GroupStatus, error) {
	s := uapi.VfioGroupStatus{Argsz: uint32(unsafe.Sizeof(uapi.VfioGroupStatus{}))}
	if _, err := g.fd.Ioctl(uapi.VFIO_GROUP_GET_STATUS, uintptr(unsafe.Pointer(&s))); err != nil {
		return GroupStatus{}, &kernel.Error{Op: "VFIO_GROUP_GET_STATUS", Object: g.fd.Name(), Err: err}
	}
	return GroupStatus{
		Viable:       s.Flags&uapi.VFIO_GROUP_FLAGS_VIABLE != 0,
		ContainerSet: s.Flags&uapi.VFIO_GROUP_FLAGS_CONTAINER_SET != 0,
	}, nil
}

// CheckViable returns a GroupNotViableError naming the blocking devices
// when the group is not viable.
func (g *Group) CheckViable() error {
	st, err := g.Status()
	if err != nil {
		return err
	}
	if st.Viable {
		return nil
	}
	blockers, _ := sysfs.GroupBlockers(g.id)
	return &GroupNotViableError{Group: g.id, Blockers: blockers}
}

// unsafeInterruptsHint explains EPERM from an IOMMU without interrupt
// remapping, where VFIO refuses devices unless told otherwise.
const unsafeInterruptsHint = "the IOMMU lacks interrupt remapping, so a device could forge MSIs: boot with vfio_iommu_type1.allow_unsafe_interrupts=1 and iommufd.allow_unsafe_interrupts=1 if you accept the risk"

// FDer is anything with a file descriptor: a *Container, or an
// *ioasid.FD (iommufd) used as a container.
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
	fd := int32(cfd)
	if _, err := g.fd.Ioctl(uapi.VFIO_GROUP_SET_CONTAINER, uintptr(unsafe.Pointer(&fd))); err != nil {
		e := &kernel.Error{Op: "VFIO_GROUP_SET_CONTAINER", Object: g.fd.Name(), Args: fmt.Sprintf("container fd %d", cfd), Err: err}
		switch {
		case errors.Is(err, unix.EBUSY):
			e.Hint = "the group already has a container"
		case errors.Is(err, unix.EPERM):
			e.Hint = unsafeInterruptsHint
		}
		return e
	}
	return nil
}

// UnsetContainer is VFIO_GROUP_UNSET_CONTAINER.
func (g *Group) UnsetContainer() error {
	if _, err := g.fd.Ioctl(uapi.VFIO_GROUP_UNSET_CONTAINER, 0); err != nil {
		return &kernel.Error{Op: "VFIO_GROUP_UNSET_CONTAINER", Object: g.fd.Name(), Err: err}
	}
	return nil
}

// Device is VFIO_GROUP_GET_DEVICE_FD: opens the device named (for PCI, its
// address such as 0000:00:03.0). The group must have a container with an
// IOMMU set.
func (g *Group) Device(name string) (*Device, error) {
	if name == "" || strings.ContainsRune(name, 0) || len(name) > 64 {
		return nil, &kernel.Error{Op: "VFIO_GROUP_GET_DEVICE_FD", Object: g.fd.Name(), Args: fmt.Sprintf("%q", name), Err: unix.EINVAL, Hint: "not a device name"}
	}
	b := append([]byte(name), 0)
	r, err := g.fd.Ioctl(uapi.VFIO_GROUP_GET_DEVICE_FD, uintptr(unsafe.Pointer(&b[0])))
	if err != nil {
		e := &kernel.Error{Op: "VFIO_GROUP_GET_DEVICE_FD", Object: g.fd.Name(), Args: name, Err: err}
		if errors.Is(err, unix.EPERM) {
			e.Hint = unsafeInterruptsHint
		}
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENODEV) {
			if devs, _ := sysfs.GroupDevices(g.id); len(devs) > 0 {
				e.Hint = "group " + fmt.Sprint(g.id) + " holds " + strings.Join(devs, ", ") + " and needs a container with an IOMMU set"
			}
		}
		return nil, e
	}
	return newDevice(int(r), name)
}
