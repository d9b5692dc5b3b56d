package pci

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/vfioctl/vfioctl/internal/sysfs"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// Group is an IOMMU group: the devices the IOMMU cannot isolate from each
// other, which VFIO hands out together.
type Group struct {
	ID       int               `json:"id"`
	Devices  []string          `json:"devices"`
	Viable   bool              `json:"viable"`
	Blockers []vfioerr.Blocker `json:"blockers"` // members whose driver makes it not viable (empty when viable)
}

// Groups lists every IOMMU group (none when the IOMMU is off).
func Groups() ([]*Group, error) {
	ents, err := os.ReadDir(filepath.Join(sysfs.Root, "kernel", "iommu_groups"))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*Group
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		g, err := GetGroup(n)
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// GetGroup reads group n with its viability by the kernel's rule: every
// member is driverless, on vfio-pci, on pci-stub, or a bridge.
func GetGroup(n int) (*Group, error) {
	devs, err := sysfs.GroupDevices(n)
	if err != nil {
		return nil, fmt.Errorf("pci: IOMMU group %d: %w", n, err)
	}
	blockers, err := sysfs.GroupBlockers(n)
	if err != nil {
		return nil, err
	}
	if blockers == nil {
		blockers = []vfioerr.Blocker{}
	}
	return &Group{ID: n, Devices: devs, Viable: len(blockers) == 0, Blockers: blockers}, nil
}
