// Package sysfs reads the PCI and IOMMU group facts that both vfio (to
// explain a group that is not viable) and pci (to decide whether binding is
// safe) need. It only reads.
package sysfs

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/vfioctl/vfioctl/vfioerr"
)

// Root is the sysfs mount; tests point it at a fake tree.
var Root = "/sys"

// uuidForm is how an mdev is named: a lowercase UUID.
var uuidForm = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// IsMdevName reports whether name is a mediated device's (a UUID) rather
// than a PCI address.
func IsMdevName(name string) bool { return uuidForm.MatchString(name) }

// devDir is a device's sysfs directory: an mdev's by its UUID
// (/sys/bus/mdev/devices/UUID), else a PCI function's by its address. The
// functions below take either name.
func devDir(name string) string {
	if IsMdevName(name) {
		return filepath.Join(Root, "bus", "mdev", "devices", name)
	}
	return filepath.Join(Root, "bus", "pci", "devices", name)
}

// GroupDevices lists the devices in IOMMU group n (PCI addresses, mdev UUIDs).
func GroupDevices(n int) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(Root, "kernel", "iommu_groups", strconv.Itoa(n), "devices"))
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(ents))
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out, nil
}

// Driver is the driver bound to a PCI device, "" when none.
func Driver(bdf string) string {
	l, err := os.Readlink(filepath.Join(devDir(bdf), "driver"))
	if err != nil {
		return ""
	}
	return filepath.Base(l)
}

// Class is the PCI class code (e.g. 0x060400 for a PCI bridge).
func Class(bdf string) uint32 {
	b, err := os.ReadFile(filepath.Join(devDir(bdf), "class"))
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 0, 32)
	return uint32(v)
}

// ViableDriver reports whether a member bound to drv keeps its group viable
// by the kernel's rule: no driver, vfio-pci (or a vfio variant driver), or
// pci-stub. Bridges are exempt whatever their driver.
func ViableDriver(drv string) bool { return drv == "" || drv == "pci-stub" || IsVFIODriver(drv) }

// IsVFIODriver reports whether drv is vfio-pci or a vfio-pci variant driver.
func IsVFIODriver(drv string) bool { return drv == "vfio-pci" || strings.HasSuffix(drv, "-vfio-pci") }

// Exists reports whether a PCI device is present.
func Exists(bdf string) bool {
	_, err := os.Stat(devDir(bdf))
	return err == nil
}

// IsBridge reports whether the class code is a PCI bridge.
func IsBridge(class uint32) bool { return class>>8 == 0x0604 }

// GroupBlockers lists the members of group n that keep it from being viable.
func GroupBlockers(n int) ([]vfioerr.Blocker, error) {
	devs, err := GroupDevices(n)
	if err != nil {
		return nil, err
	}
	var out []vfioerr.Blocker
	for _, d := range devs {
		if IsMdevName(d) {
			continue // an mdev's group is its own, made by VFIO for it
		}
		if drv := Driver(d); !ViableDriver(drv) && !IsBridge(Class(d)) {
			out = append(out, vfioerr.Blocker{Device: d, Driver: drv})
		}
	}
	return out, nil
}

// DeviceGroup is the IOMMU group number of a PCI device.
func DeviceGroup(bdf string) (int, error) {
	l, err := os.Readlink(filepath.Join(devDir(bdf), "iommu_group"))
	if err != nil {
		return -1, err
	}
	return strconv.Atoi(filepath.Base(l))
}

// DeviceCdev is the name of a device's VFIO char device (vfioN) under
// /dev/vfio/devices, or "" when it has none. A vfio-dev entry without a
// device number (a no-IOMMU device on Linux 6.12) has no node.
func DeviceCdev(bdf string) string {
	dir := filepath.Join(devDir(bdf), "vfio-dev")
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) == 0 {
		return ""
	}
	if _, err := os.Stat(filepath.Join(dir, ents[0].Name(), "dev")); err != nil {
		return ""
	}
	return ents[0].Name()
}

// GroupNode is the VFIO device node of IOMMU group n: /dev/vfio/N, or
// /dev/vfio/noiommu-N for a group VFIO made in no-IOMMU mode.
func GroupNode(n int) string {
	if NoIOMMUGroup(n) {
		return "/dev/vfio/noiommu-" + strconv.Itoa(n)
	}
	return "/dev/vfio/" + strconv.Itoa(n)
}

// NoIOMMUGroup reports whether group n is one VFIO made for a device with
// no IOMMU (vfio.enable_unsafe_noiommu_mode): its name is vfio-noiommu.
func NoIOMMUGroup(n int) bool {
	b, err := os.ReadFile(filepath.Join(Root, "kernel", "iommu_groups", strconv.Itoa(n), "name"))
	if err != nil || strings.TrimSpace(string(b)) != "vfio-noiommu" {
		return false
	}
	// VFIO names the groups it makes for emulated devices (mdevs) the
	// same (Linux 6.12, vfio_noiommu_group_alloc); those translate
	// through their parent, and their node is /dev/vfio/N.
	devs, _ := GroupDevices(n)
	for _, d := range devs {
		if IsMdevName(d) {
			return false
		}
	}
	return true
}

// NoIOMMUDevice reports whether a PCI device is in a no-IOMMU group.
func NoIOMMUDevice(bdf string) bool {
	n, err := DeviceGroup(bdf)
	return err == nil && NoIOMMUGroup(n)
}

// IOMMUCoversPCI reports whether an IOMMU translates for some PCI device:
// one is in an IOMMU group that VFIO did not make in no-IOMMU mode. An
// IOMMU can be registered and cover none (one for other buses, or one
// that attaches devices only when a driver binds them, as virtio-iommu).
func IOMMUCoversPCI() bool {
	ents, err := os.ReadDir(filepath.Join(Root, "bus", "pci", "devices"))
	if err != nil {
		return false
	}
	for _, e := range ents {
		if n, err := DeviceGroup(e.Name()); err == nil && !NoIOMMUGroup(n) {
			return true
		}
	}
	return false
}

// NoIOMMUEnabled reports whether VFIO's unsafe no-IOMMU mode is on.
func NoIOMMUEnabled() bool {
	b, err := os.ReadFile(filepath.Join(Root, "module", "vfio", "parameters", "enable_unsafe_noiommu_mode"))
	return err == nil && strings.TrimSpace(string(b)) == "Y"
}

// PhysFn is the physical function of an SR-IOV virtual function, "" for a
// device that is not one.
func PhysFn(bdf string) string {
	l, err := os.Readlink(filepath.Join(devDir(bdf), "physfn"))
	if err != nil {
		return ""
	}
	return filepath.Base(l)
}

// IsPF reports whether a PCI device is an SR-IOV physical function (it has
// sriov_totalvfs).
func IsPF(bdf string) bool {
	_, err := os.Stat(filepath.Join(devDir(bdf), "sriov_totalvfs"))
	return err == nil
}
