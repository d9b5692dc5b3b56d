package cdi

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/vfioctl/vfioctl/pci"
)

// Policy chooses the backend whose device nodes a set of devices gets.
type Policy string

const (
	// Legacy: the type1 container and group nodes, on every kernel.
	Legacy Policy = "legacy"
	// PreferIOMMUFD: /dev/iommu and the cdevs when every device has a cdev
	// and /dev/iommu exists; else legacy, for all of them.
	PreferIOMMUFD Policy = "prefer-iommufd"
	// RequireIOMMUFD: /dev/iommu and the cdevs, or an error.
	RequireIOMMUFD Policy = "require-iommufd"
)

// Policies are the accepted policies, the default first.
var Policies = []Policy{PreferIOMMUFD, Legacy, RequireIOMMUFD}

// ParsePolicy reads a policy by name ("" is PreferIOMMUFD).
func ParsePolicy(s string) (Policy, error) {
	if s == "" {
		return PreferIOMMUFD, nil
	}
	for _, p := range Policies {
		if string(p) == s {
			return p, nil
		}
	}
	var names []string
	for _, p := range Policies {
		names = append(names, string(p))
	}
	return "", fmt.Errorf("cdi: unknown backend policy %q (have %s)", s, strings.Join(names, ", "))
}

// The backends a NodeSet can name.
const (
	BackendLegacy  = "legacy"
	BackendIOMMUFD = "iommufd"
)

// The nodes each backend shares among its devices.
var (
	ContainerNode = "/dev/vfio/vfio"
	IOMMUFDNode   = "/dev/iommu"
)

// ErrNoIOMMUFD: RequireIOMMUFD was asked for a set iommufd cannot serve.
var ErrNoIOMMUFD = errors.New("iommufd cannot serve these devices")

// Device is one PCI device of a NodeSet and the nodes of its own.
type Device struct {
	Address string   `json:"address"`
	Group   int      `json:"iommu_group"`
	Nodes   []string `json:"nodes"` // /dev/vfio/N, or /dev/vfio/devices/vfioM
}

// NodeSet is the device nodes of one backend for a set of devices.
type NodeSet struct {
	Backend string   `json:"backend"`
	Shared  []string `json:"shared_nodes"` // /dev/vfio/vfio, or /dev/iommu
	Devices []Device `json:"devices"`
}

// candidate is what the choice needs of a device.
type candidate struct {
	address, group, cdev string
	groupID              int
}

// Nodes chooses the backend for the devices at addrs by policy p and
// returns their nodes. Every device must be bound to vfio-pci in a viable
// IOMMU group; an error names the first that is not.
func Nodes(addrs []string, p Policy) (*NodeSet, error) {
	var cs []candidate
	for _, a := range addrs {
		d, err := pci.Get(a)
		if err != nil {
			return nil, err
		}
		if d.Driver != pci.VFIODriver {
			return nil, fmt.Errorf("cdi: %s: %w (driver %q)", d.Address, pci.ErrNotBound, d.Driver)
		}
		g, err := pci.GetGroup(d.IOMMUGroup)
		if err != nil {
			return nil, err
		}
		if !g.Viable {
			return nil, fmt.Errorf("cdi: %s: group %d: %w (%s is on %s)", d.Address, g.ID, pci.ErrNotViable, g.Blockers[0].Device, g.Blockers[0].Driver)
		}
		cs = append(cs, candidate{address: d.Address, group: d.VFIOGroup, cdev: d.VFIOCdev, groupID: d.IOMMUGroup})
	}
	return choose(cs, p, exists)
}

func exists(path string) bool { _, err := os.Stat(path); return err == nil }

// choose applies policy p to the candidates; have reports whether a node
// exists.
func choose(cs []candidate, p Policy, have func(string) bool) (*NodeSet, error) {
	if len(cs) == 0 {
		return nil, errors.New("cdi: no devices")
	}
	// iommufd serves the set when every device has a cdev and /dev/iommu
	// exists; the reason is kept for RequireIOMMUFD's error.
	var why string
	switch {
	case !have(IOMMUFDNode):
		why = IOMMUFDNode + " does not exist (CONFIG_IOMMUFD, Linux 6.2+)"
	default:
		for _, c := range cs {
			if c.cdev == "" || !have(c.cdev) {
				why = c.address + " has no VFIO cdev (CONFIG_VFIO_DEVICE_CDEV, Linux 6.6+; none in no-IOMMU mode)"
				break
			}
		}
	}
	useIOMMUFD := why == ""
	switch p {
	case Legacy:
		useIOMMUFD = false
	case RequireIOMMUFD:
		if !useIOMMUFD {
			return nil, fmt.Errorf("cdi: %w: %s", ErrNoIOMMUFD, why)
		}
	case PreferIOMMUFD:
	default:
		return nil, fmt.Errorf("cdi: unknown backend policy %q", p)
	}
	ns := &NodeSet{Backend: BackendLegacy, Shared: []string{ContainerNode}}
	if useIOMMUFD {
		ns = &NodeSet{Backend: BackendIOMMUFD, Shared: []string{IOMMUFDNode}}
	} else if !have(ContainerNode) {
		return nil, fmt.Errorf("cdi: %s does not exist (CONFIG_VFIO_CONTAINER or CONFIG_IOMMUFD_VFIO_CONTAINER)", ContainerNode)
	}
	for _, c := range cs {
		node := c.cdev
		if !useIOMMUFD {
			node = c.group
			if node == "" || !have(node) {
				return nil, fmt.Errorf("cdi: %s: its group node %q does not exist", c.address, node)
			}
		}
		ns.Devices = append(ns.Devices, Device{Address: c.address, Group: c.groupID, Nodes: []string{node}})
	}
	return ns, nil
}
