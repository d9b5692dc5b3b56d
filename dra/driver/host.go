package driver

import (
	"errors"

	"k8s.io/dynamic-resource-allocation/deviceattribute"

	"github.com/vfioctl/vfioctl/cdi"
	"github.com/vfioctl/vfioctl/pci"
	"github.com/vfioctl/vfioctl/vfio"
)

// Host is what the driver does to the machine: the pci and cdi packages
// on a real node (SysfsHost), a fake in tests.
type Host interface {
	Devices() ([]*pci.Device, error)
	Groups() (map[int]*pci.Group, error)
	Get(addr string) (*pci.Device, error)
	Bind(addr string, o pci.BindOptions) ([]pci.Bound, error)
	Restore(addr string) (string, error)
	SetOwner(addr string, o pci.Owner) error
	// WriteSpec writes the CDI spec of kind for addrs under policy into
	// dir and returns each address's CDI name and the backend chosen.
	WriteSpec(addrs []string, p cdi.Policy, kind, dir string) (names map[string]string, backend string, err error)
	RemoveSpec(kind, dir string) error
	PCIeRoot(addr string) (string, error)
	CdevSupported() bool
}

// SysfsHost is the real machine.
type SysfsHost struct{}

func (SysfsHost) Devices() ([]*pci.Device, error) { return pci.List() }

func (SysfsHost) Groups() (map[int]*pci.Group, error) {
	gs, err := pci.Groups()
	if err != nil {
		return nil, err
	}
	out := map[int]*pci.Group{}
	for _, g := range gs {
		out[g.ID] = g
	}
	return out, nil
}

func (SysfsHost) Get(addr string) (*pci.Device, error) { return pci.Get(addr) }

func (SysfsHost) Bind(addr string, o pci.BindOptions) ([]pci.Bound, error) { return pci.Bind(addr, o) }

// Restore gives the device back to the driver pci.Bind recorded; a device
// that had none (Bind records nothing then) is released from vfio-pci.
func (SysfsHost) Restore(addr string) (string, error) {
	drv, err := pci.Restore(addr)
	if errors.Is(err, pci.ErrNoRecord) {
		return pci.Unbind(addr)
	}
	return drv, err
}

func (SysfsHost) SetOwner(addr string, o pci.Owner) error {
	_, err := pci.SetOwner(addr, o)
	return err
}

func (SysfsHost) WriteSpec(addrs []string, p cdi.Policy, kind, dir string) (map[string]string, string, error) {
	spec, ns, err := cdi.Generate(addrs, p, kind)
	if err != nil {
		return nil, "", err
	}
	if _, err := cdi.Write(spec, dir); err != nil {
		return nil, "", err
	}
	names := map[string]string{}
	for _, a := range addrs {
		names[a] = cdi.Name(kind, a)
	}
	return names, ns.Backend, nil
}

func (SysfsHost) RemoveSpec(kind, dir string) error { return cdi.Remove(kind, dir) }

func (SysfsHost) PCIeRoot(addr string) (string, error) {
	a, err := deviceattribute.GetPCIeRootAttributeByPCIBusID(addr)
	if err != nil || a.Value.StringValue == nil {
		return "", err
	}
	return *a.Value.StringValue, nil
}

// CdevSupported is vfio.Offers' answer for the machine: whether the
// kernel gives VFIO devices cdevs (the iommufd backend).
func (SysfsHost) CdevSupported() bool {
	for _, o := range vfio.Offers("") {
		if o.Backend == vfio.Cdev {
			return o.OK
		}
	}
	return false
}
