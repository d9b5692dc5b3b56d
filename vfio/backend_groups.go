package vfio

import (
	"errors"
	"fmt"

	"github.com/vfioctl/vfioctl/internal/sysfs"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// groupSet is the groups of a space whose backend reaches devices through
// their group (the container backends and group-iommufd): two devices of
// one group share the group fd, and the group is detached and closed with
// its last device.
type groupSet struct {
	groups map[int]*sharedGroup
}

type sharedGroup struct {
	g        *Group
	refs     int
	attached bool // this process attached it (SetContainer), so detaches it
}

// join opens (or shares) the group of bdf and attaches it to container
// (a *Container or an iommufd), recording it on h.
func (s *groupSet) join(h *Handle, bdf string, container FDer) error {
	n, err := deviceGroup(bdf)
	if err != nil {
		return err
	}
	if s.groups == nil {
		s.groups = map[int]*sharedGroup{}
	}
	if sg := s.groups[n]; sg != nil {
		sg.refs++
		h.groupID = n
		return nil
	}
	g, err := OpenGroup(n)
	if err != nil {
		return err
	}
	sg := &sharedGroup{g: g, refs: 1}
	s.groups[n] = sg
	h.groupID = n
	err = g.SetContainer(container)
	var nv *vfioerr.GroupNotViableError
	if errors.As(err, &nv) {
		nv.Address = bdf
	}
	sg.attached = err == nil
	return err
}

// adopt takes a group received from another process (Receive): it is
// attached there, so it is not detached here.
func (s *groupSet) adopt(h *Handle, g *Group) {
	s.groups = map[int]*sharedGroup{g.ID(): {g: g, refs: 1}}
	h.groupID = g.ID()
}

// group is the Group h holds, or nil.
func (s *groupSet) group(h *Handle) *Group {
	if sg := s.groups[h.groupID]; sg != nil {
		return sg.g
	}
	return nil
}

// device opens bdf from its group, with the VF token when given.
func (s *groupSet) device(h *Handle, bdf string, token *VFToken) (*Device, error) {
	g := s.group(h)
	if token != nil {
		return g.DeviceWithVFToken(bdf, *token)
	}
	return g.Device(bdf)
}

func (s *groupSet) release(h *Handle) []error {
	sg := s.groups[h.groupID]
	if sg == nil {
		return nil
	}
	if sg.refs--; sg.refs > 0 {
		return nil
	}
	delete(s.groups, h.groupID)
	var errs []error
	if sg.attached {
		errs = append(errs, sg.g.UnsetContainer())
	}
	return append(errs, sg.g.Close())
}

// hotReset proves ownership the group way: the groups of every dependent
// must be open in this space.
func (s *groupSet) hotReset(d *Device, deps []Dependent) error {
	var groups []*Group
	var missing []string
	seen := map[int]bool{}
	for _, dep := range deps {
		id := int(dep.GroupID)
		sg := s.groups[id]
		switch {
		case sg == nil:
			missing = append(missing, fmt.Sprintf("%s (IOMMU group %d, not open here)", dep.Address(), id))
		case !seen[id]:
			groups, seen[id] = append(groups, sg.g), true
		}
	}
	if len(missing) > 0 {
		return notOwned(d, missing)
	}
	return d.HotReset(groups...)
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
