package pci

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"

	"github.com/vfioctl/vfioctl/internal/sysfs"
)

// Owner is the user and group given a device's VFIO nodes, so that a VMM
// running as that user can open them without root (dpdk-devbind's -U/-G).
type Owner struct {
	UID int `json:"uid"`
	GID int `json:"gid"`
}

func (o Owner) String() string { return fmt.Sprintf("%d:%d", o.UID, o.GID) }

// ParseOwner reads "UID:GID", "USER:GROUP" (names from the passwd and group
// databases) or "USER" alone (the user's primary group).
func ParseOwner(s string) (Owner, error) {
	name, group, hasGroup := strings.Cut(s, ":")
	if name == "" || (hasGroup && group == "") {
		return Owner{}, fmt.Errorf("pci: owner %q: want UID:GID, USER:GROUP or USER", s)
	}
	var o Owner
	if uid, err := strconv.Atoi(name); err == nil {
		o.UID, o.GID = uid, -1
	} else {
		u, err := user.Lookup(name)
		if err != nil {
			return Owner{}, fmt.Errorf("pci: owner %q: %w", s, err)
		}
		o.UID, _ = strconv.Atoi(u.Uid)
		o.GID, _ = strconv.Atoi(u.Gid)
	}
	if hasGroup {
		if gid, err := strconv.Atoi(group); err == nil {
			o.GID = gid
		} else {
			g, err := user.LookupGroup(group)
			if err != nil {
				return Owner{}, fmt.Errorf("pci: owner %q: %w", s, err)
			}
			o.GID, _ = strconv.Atoi(g.Gid)
		}
	}
	if o.GID < 0 {
		return Owner{}, fmt.Errorf("pci: owner %q: a numeric user needs a group too (UID:GID)", s)
	}
	if o.UID < 0 || o.GID < 0 {
		return Owner{}, fmt.Errorf("pci: owner %q: negative ids", s)
	}
	return o, nil
}

// SetOwner gives the VFIO nodes of a device bound to vfio-pci (its group
// node /dev/vfio/N and, where the kernel has them, its cdev
// /dev/vfio/devices/vfioM) to o, readable and writable by the owner and the
// group (mode 0660). It returns the nodes changed.
// Shell equivalent: chown UID:GID /dev/vfio/N; chmod 0660 /dev/vfio/N.
//
// The other nodes a VMM opens are the system's: /dev/vfio/vfio is
// world-usable, and /dev/iommu (for the cdev) is root's unless a udev rule
// says otherwise.
func SetOwner(addr string, o Owner) ([]string, error) {
	d, err := Get(addr)
	if err != nil {
		return nil, err
	}
	if d.Driver != VFIODriver {
		return nil, fmt.Errorf("pci: %s: %w (its driver is %s)", d.Address, ErrNotBound, orNone(d.Driver))
	}
	var nodes []string
	if g, err := sysfs.DeviceGroup(d.Address); err == nil {
		nodes = append(nodes, sysfs.GroupNode(g))
	}
	if c := sysfs.DeviceCdev(d.Address); c != "" {
		nodes = append(nodes, "/dev/vfio/devices/"+c)
	}
	if len(nodes) == 0 {
		return nil, fmt.Errorf("pci: %s has no VFIO nodes", d.Address)
	}
	for _, n := range nodes {
		if err := os.Chown(n, o.UID, o.GID); err != nil {
			return nil, fmt.Errorf("pci: owner of %s: %w", n, err)
		}
		if err := os.Chmod(n, 0o660); err != nil {
			return nil, fmt.Errorf("pci: mode of %s: %w", n, err)
		}
	}
	return nodes, nil
}

func orNone(drv string) string {
	if drv == "" {
		return "none"
	}
	return drv
}
