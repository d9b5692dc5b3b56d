package pci

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/vfioctl/vfioctl/internal/sysfs"
)

// Device is one PCI function as sysfs describes it.
type Device struct {
	Address      string   `json:"address"`
	Vendor       uint16   `json:"vendor"`
	Device       uint16   `json:"device"`
	SubVendor    uint16   `json:"subsystem_vendor"`
	SubDevice    uint16   `json:"subsystem_device"`
	Class        uint32   `json:"class"`
	VendorName   string   `json:"vendor_name,omitempty"`
	DeviceName   string   `json:"device_name,omitempty"`
	ClassName    string   `json:"class_name"`
	Driver       string   `json:"driver,omitempty"`
	Override     string   `json:"driver_override,omitempty"`
	Modules      []string `json:"modules,omitempty"` // modules whose aliases match
	IOMMUGroup   int      `json:"iommu_group"`       // -1: no group (IOMMU off, or not attached yet)
	NUMANode     int      `json:"numa_node"`
	ResetMethods []string `json:"reset_methods,omitempty"`
	PhysFn       string   `json:"physfn,omitempty"` // the PF of a VF
	VirtFns      []string `json:"virtfns,omitempty"`
	TotalVFs     int      `json:"sriov_totalvfs,omitempty"` // VFs an SR-IOV PF can have
	Netdevs      []string `json:"netdevs,omitempty"`
	BlockDevs    []string `json:"block_devices,omitempty"`
	VFIOGroup    string   `json:"vfio_group_node,omitempty"` // /dev/vfio/N when bound to vfio-pci
	VFIOCdev     string   `json:"vfio_cdev,omitempty"`       // /dev/vfio/devices/vfioN
	NoIOMMU      bool     `json:"noiommu,omitempty"`         // in a group VFIO made in no-IOMMU mode
}

// ErrNoDevice is returned for an address with no device.
var ErrNoDevice = errors.New("no such PCI device")

func devDir(addr string) string { return filepath.Join(sysfs.Root, "bus", "pci", "devices", addr) }

// List returns every PCI device, sorted by address.
func List() ([]*Device, error) {
	ents, err := os.ReadDir(filepath.Join(sysfs.Root, "bus", "pci", "devices"))
	if err != nil {
		return nil, fmt.Errorf("pci: %w", err)
	}
	ids := loadIDs()
	var out []*Device
	for _, e := range ents {
		d, err := read(e.Name(), ids)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Address < out[j].Address })
	return out, nil
}

// Get returns the device at addr (any accepted form, see ParseAddress).
func Get(addr string) (*Device, error) {
	a, err := ParseAddress(addr)
	if err != nil {
		return nil, err
	}
	return read(a.String(), loadIDs())
}

func read(addr string, ids *idDB) (*Device, error) {
	dir := devDir(addr)
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("pci: %s: %w", addr, ErrNoDevice)
	}
	d := &Device{
		Address:    addr,
		Vendor:     uint16(readHex(dir, "vendor")),
		Device:     uint16(readHex(dir, "device")),
		SubVendor:  uint16(readHex(dir, "subsystem_vendor")),
		SubDevice:  uint16(readHex(dir, "subsystem_device")),
		Class:      uint32(readHex(dir, "class")),
		Driver:     sysfs.Driver(addr),
		IOMMUGroup: -1,
		NUMANode:   -1,
	}
	if g, err := sysfs.DeviceGroup(addr); err == nil {
		d.IOMMUGroup = g
		d.NoIOMMU = sysfs.NoIOMMUGroup(g)
	}
	if n, err := strconv.Atoi(readStr(dir, "numa_node")); err == nil {
		d.NUMANode = n
	}
	if o := readStr(dir, "driver_override"); o != "(null)" {
		d.Override = o
	}
	d.ResetMethods = strings.Fields(readStr(dir, "reset_method"))
	if l, err := os.Readlink(filepath.Join(dir, "physfn")); err == nil {
		d.PhysFn = filepath.Base(l)
	}
	d.TotalVFs, _ = strconv.Atoi(readStr(dir, "sriov_totalvfs"))
	vfs, _ := filepath.Glob(filepath.Join(dir, "virtfn*"))
	for _, v := range vfs {
		if l, err := os.Readlink(v); err == nil {
			d.VirtFns = append(d.VirtFns, filepath.Base(l))
		}
	}
	d.Netdevs = names(filepath.Join(dir, "net"))
	d.BlockDevs = blockDevs(dir)
	d.VendorName, d.DeviceName = ids.names(d.Vendor, d.Device)
	d.ClassName = ids.className(d.Class)
	d.Modules = modulesFor(readStr(dir, "modalias"))
	if d.Driver == "vfio-pci" && d.IOMMUGroup >= 0 {
		d.VFIOGroup = sysfs.GroupNode(d.IOMMUGroup)
	}
	if c := sysfs.DeviceCdev(addr); c != "" {
		d.VFIOCdev = "/dev/vfio/devices/" + c
	}
	return d, nil
}

func readStr(dir, name string) string {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func readHex(dir, name string) uint64 {
	v, _ := strconv.ParseUint(readStr(dir, name), 0, 32)
	return v
}

func names(dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// blockDevs lists the whole disks whose device lies below the PCI device
// in sysfs (nvme namespaces, disks behind a SATA or virtio controller),
// from /sys/class/block.
func blockDevs(dir string) []string {
	dir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil
	}
	ents, _ := os.ReadDir(filepath.Join(sysfs.Root, "class", "block"))
	var out []string
	for _, e := range ents {
		p := filepath.Join(sysfs.Root, "class", "block", e.Name())
		target, err := filepath.EvalSymlinks(p)
		if err != nil || !strings.HasPrefix(target, dir+"/") {
			continue
		}
		if _, err := os.Stat(filepath.Join(p, "partition")); err == nil {
			continue // partitions are checked with their disk
		}
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

// IsBridge reports whether the device is a PCI-to-PCI bridge.
func (d *Device) IsBridge() bool { return sysfs.IsBridge(d.Class) }

// ID is "vvvv:dddd".
func (d *Device) ID() string { return fmt.Sprintf("%04x:%04x", d.Vendor, d.Device) }

// Name is the best human name: "Vendor Device", or the IDs.
func (d *Device) Name() string {
	if d.VendorName == "" && d.DeviceName == "" {
		return d.ClassName + " [" + d.ID() + "]"
	}
	return strings.TrimSpace(d.VendorName + " " + d.DeviceName)
}
