package cdi

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/vfioctl/vfioctl/pci"
	"github.com/vfioctl/vfioctl/vfio"
	"github.com/vfioctl/vfioctl/vfioerr"
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

// The backends a NodeSet can name: words vfio.ParseBackend reads (and so
// vfioctl --backend), "iommufd" as vfio.Cdev, so a container's
// VFIOCTL_BACKEND opens its devices the way its nodes allow.
const (
	BackendLegacy  = "legacy"  // vfio.Legacy
	BackendIOMMUFD = "iommufd" // vfio.Cdev
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

// candidate is what the choice needs of a device: its nodes, and whether
// this machine offers it the cdev backend (vfio.Offers, the probe Open
// uses) and if not why.
type candidate struct {
	address, group, cdev string
	groupID              int
	cdevOffer            vfio.Offer
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
			return nil, fmt.Errorf("cdi: %s: group %d: %w (%s is on %s)", d.Address, g.ID, vfioerr.ErrGroupNotViable, g.Blockers[0].Device, g.Blockers[0].Driver)
		}
		cs = append(cs, candidate{address: d.Address, group: d.VFIOGroup, cdev: d.VFIOCdev, groupID: d.IOMMUGroup, cdevOffer: offerOf(vfio.Offers(d.Address), vfio.Cdev)})
	}
	return choose(cs, p, exists)
}

func exists(path string) bool { _, err := os.Stat(path); return err == nil }

// offerOf picks backend b's offer.
func offerOf(offers []vfio.Offer, b vfio.Backend) vfio.Offer {
	for _, of := range offers {
		if of.Backend == b {
			return of
		}
	}
	return vfio.Offer{Backend: b, Why: "not offered"}
}

// choose applies policy p to the candidates; have reports whether a node
// exists.
func choose(cs []candidate, p Policy, have func(string) bool) (*NodeSet, error) {
	if len(cs) == 0 {
		return nil, errors.New("cdi: no devices")
	}
	// iommufd serves the set when the machine offers every device the
	// cdev backend; the first reason it does not is kept for
	// RequireIOMMUFD's error.
	var why string
	for _, c := range cs {
		if !c.cdevOffer.OK {
			why = c.address + ": " + c.cdevOffer.Why
			break
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
