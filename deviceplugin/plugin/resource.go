package plugin

import (
	"fmt"
	"strconv"
	"strings"
)

// Selector matches PCI devices by vendor and device ID.
type Selector struct {
	Vendor, Device uint16
}

func (s Selector) String() string { return fmt.Sprintf("%04x:%04x", s.Vendor, s.Device) }

// Resource is an extended resource the kubelet schedules, and the devices
// it is made of.
type Resource struct {
	Name      string // "vfioctl.dev/edu": a domain, a slash, a name
	Selectors []Selector
}

// ParseResource reads NAME=VVVV:DDDD[,VVVV:DDDD...] in hex, as lspci -n
// prints them: "vfioctl.dev/edu=1234:11e8".
func ParseResource(s string) (Resource, error) {
	name, ids, ok := strings.Cut(s, "=")
	if !ok || ids == "" {
		return Resource{}, fmt.Errorf("resource %q: want NAME=VENDOR:DEVICE[,VENDOR:DEVICE...], e.g. vfioctl.dev/edu=1234:11e8", s)
	}
	if err := validName(name); err != nil {
		return Resource{}, fmt.Errorf("resource %q: %w", s, err)
	}
	r := Resource{Name: name}
	for _, id := range strings.Split(ids, ",") {
		v, d, ok := strings.Cut(id, ":")
		vv, err1 := strconv.ParseUint(v, 16, 16)
		dd, err2 := strconv.ParseUint(d, 16, 16)
		if !ok || err1 != nil || err2 != nil || len(v) != 4 || len(d) != 4 {
			return Resource{}, fmt.Errorf("resource %q: %q is not VENDOR:DEVICE in hex (e.g. 8086:10d3)", s, id)
		}
		r.Selectors = append(r.Selectors, Selector{uint16(vv), uint16(dd)})
	}
	return r, nil
}

// validName checks a resource name as the kubelet does for extended
// resources: domain/name, each of letters, digits, '-', '_' and '.'.
func validName(name string) error {
	domain, rest, ok := strings.Cut(name, "/")
	if !ok || domain == "" || rest == "" || strings.Contains(rest, "/") || !strings.Contains(domain, ".") {
		return fmt.Errorf("want a name like vendor.example/device (a domain, one slash, a name)")
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '/') {
			return fmt.Errorf("character %q is not allowed", c)
		}
	}
	return nil
}

// Matches reports whether a device with these IDs belongs to r.
func (r Resource) Matches(vendor, device uint16) bool {
	for _, s := range r.Selectors {
		if s.Vendor == vendor && s.Device == device {
			return true
		}
	}
	return false
}

// EnvName is the variable Allocate sets to the allocated PCI addresses:
// PCI_RESOURCE_ and the name upper-cased with '.' and '/' as '_', as
// KubeVirt reads it ("vfioctl.dev/edu" -> PCI_RESOURCE_VFIOCTL_DEV_EDU).
func (r Resource) EnvName() string {
	return "PCI_RESOURCE_" + strings.ToUpper(strings.NewReplacer(".", "_", "/", "_", "-", "_").Replace(r.Name))
}

// CDIKind is the CDI vendor/class of the resource's devices, so that each
// resource has a spec of its own: the resource name with '.' in the name
// part as '_', and "pci-" before a name that does not start with a letter
// (a CDI class must): "vfioctl.dev/edu" stays, "example.com/100g.nic" is
// "example.com/pci-100g_nic".
func (r Resource) CDIKind() string {
	domain, name, _ := strings.Cut(r.Name, "/")
	class := strings.ReplaceAll(name, ".", "_")
	if c := class[0]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
		class = "pci-" + class
	}
	return domain + "/" + class
}

// socketName is the plugin's socket in the kubelet's plugin directory.
func (r Resource) socketName() string {
	return "vfioctl-" + strings.NewReplacer("/", "_", ".", "_").Replace(r.Name) + ".sock"
}
