package cdi

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	cdiapi "tags.cncf.io/container-device-interface/pkg/cdi"
	"tags.cncf.io/container-device-interface/pkg/parser"
	specs "tags.cncf.io/container-device-interface/specs-go"

	"github.com/vfioctl/vfioctl/pci"
)

// DefaultKind is the vendor/class of the devices vfioctl describes: a
// device is then named "vfioctl.dev/pci=0000:00:05.0".
const DefaultKind = "vfioctl.dev/pci"

// Annotations vfioctl puts in its specs.
const (
	AnnotationBackend = "vfioctl.dev/backend"     // on the spec: legacy or iommufd
	AnnotationAddress = "vfioctl.dev/pci-address" // on each device
	AnnotationGroup   = "vfioctl.dev/iommu-group" // on each device
)

// BoundDevices lists the addresses of the devices bound to vfio-pci.
func BoundDevices() ([]string, error) {
	devs, err := pci.List()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, d := range devs {
		if d.Driver == pci.VFIODriver {
			out = append(out, d.Address)
		}
	}
	return out, nil
}

// Name is the fully qualified CDI name of the device at a PCI address.
func Name(kind, address string) string {
	vendor, class := parser.ParseQualifier(kind)
	return parser.QualifiedName(vendor, class, address)
}

// Spec builds the CDI spec of a node set: the shared node in the spec's
// edits (given to a container whenever any of its devices is), each
// device's own nodes in its edits. The spec is validated by the CDI
// library and carries the oldest CDI version that can read it.
func Spec(ns *NodeSet, kind string) (*specs.Spec, error) {
	if kind == "" {
		kind = DefaultKind
	}
	vendor, class := parser.ParseQualifier(kind)
	if err := parser.ValidateVendorName(vendor); err != nil {
		return nil, fmt.Errorf("cdi: kind %q: %w", kind, err)
	}
	if err := parser.ValidateClassName(class); err != nil {
		return nil, fmt.Errorf("cdi: kind %q: %w", kind, err)
	}
	s := &specs.Spec{
		Version:     specs.CurrentVersion,
		Kind:        kind,
		Annotations: map[string]string{AnnotationBackend: ns.Backend},
	}
	for _, n := range ns.Shared {
		s.ContainerEdits.DeviceNodes = append(s.ContainerEdits.DeviceNodes, node(n))
	}
	devs := append([]Device(nil), ns.Devices...)
	sort.Slice(devs, func(i, j int) bool { return devs[i].Address < devs[j].Address })
	for _, d := range devs {
		sd := specs.Device{
			Name:        d.Address,
			Annotations: map[string]string{AnnotationAddress: d.Address, AnnotationGroup: fmt.Sprint(d.Group)},
		}
		for _, n := range d.Nodes {
			sd.ContainerEdits.DeviceNodes = append(sd.ContainerEdits.DeviceNodes, node(n))
		}
		s.Devices = append(s.Devices, sd)
	}
	v, err := specs.MinimumRequiredVersion(s)
	if err != nil {
		return nil, fmt.Errorf("cdi: %w", err)
	}
	s.Version = v
	// Parsing our own output validates it as a runtime would.
	if _, err := cdiapi.ParseSpec(mustJSON(s)); err != nil {
		return nil, fmt.Errorf("cdi: the generated spec is not valid: %w", err)
	}
	return s, nil
}

// node is a character device given to the container at the same path,
// read-write (major and minor are read from the host path by the runtime).
func node(path string) *specs.DeviceNode {
	return &specs.DeviceNode{Path: path, Type: "c", Permissions: "rw"}
}

// Generate is Nodes and Spec: the spec of the devices at addrs (all those
// bound to vfio-pci when addrs is empty) under policy p.
func Generate(addrs []string, p Policy, kind string) (*specs.Spec, *NodeSet, error) {
	if len(addrs) == 0 {
		var err error
		if addrs, err = BoundDevices(); err != nil {
			return nil, nil, err
		}
		if len(addrs) == 0 {
			return nil, nil, fmt.Errorf("cdi: no device is bound to vfio-pci (vfioctl bind ADDRESS)")
		}
	}
	ns, err := Nodes(addrs, p)
	if err != nil {
		return nil, nil, err
	}
	s, err := Spec(ns, kind)
	return s, ns, err
}

// Write writes spec into dir (atomically, replacing the spec of the same
// kind written before) under the name the CDI library gives it, and
// returns its path. The library validates it first.
func Write(spec *specs.Spec, dir string) (string, error) {
	cache, _ := cdiapi.NewCache(cdiapi.WithSpecDirs(dir), cdiapi.WithAutoRefresh(false))
	name, err := cdiapi.GenerateNameForSpec(spec)
	if err != nil {
		return "", fmt.Errorf("cdi: %w", err)
	}
	if err := cache.WriteSpec(spec, name+".yaml"); err != nil {
		return "", fmt.Errorf("cdi: write %s in %s: %w", name, dir, err)
	}
	path := filepath.Join(dir, name+".yaml")
	if _, err := cdiapi.ReadSpec(path, 0); err != nil {
		return "", fmt.Errorf("cdi: wrote %s, but the CDI library does not read it back: %w", path, err)
	}
	return path, nil
}

// Remove deletes the spec of kind that Write wrote into dir, if any.
func Remove(kind, dir string) error {
	name, err := cdiapi.GenerateNameForSpec(&specs.Spec{Kind: kind})
	if err != nil {
		return fmt.Errorf("cdi: %w", err)
	}
	if err := os.Remove(filepath.Join(dir, name+".yaml")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cdi: %w", err)
	}
	return nil
}

// Published is a CDI device as the CDI library reads it from the spec
// directories, with every node a container gets with it.
type Published struct {
	Name  string   `json:"name"`
	Spec  string   `json:"spec"`
	Nodes []string `json:"nodes"`
}

// List reads the CDI specs in dirs (the CDI defaults, /etc/cdi and
// /var/run/cdi, when none) with the CDI library and returns every device
// they publish, of any vendor, and the errors of specs it could not use,
// by path.
func List(dirs ...string) ([]Published, map[string][]error) {
	if len(dirs) == 0 {
		dirs = cdiapi.DefaultSpecDirs
	}
	cache, _ := cdiapi.NewCache(cdiapi.WithSpecDirs(dirs...), cdiapi.WithAutoRefresh(false))
	var out []Published
	for _, name := range cache.ListDevices() {
		d := cache.GetDevice(name)
		p := Published{Name: name, Spec: d.GetSpec().GetPath()}
		for _, n := range d.GetSpec().ContainerEdits.DeviceNodes {
			p.Nodes = append(p.Nodes, n.Path)
		}
		for _, n := range d.ContainerEdits.DeviceNodes {
			p.Nodes = append(p.Nodes, n.Path)
		}
		out = append(out, p)
	}
	return out, cache.GetErrors()
}
