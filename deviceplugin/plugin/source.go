package plugin

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/vfioctl/vfioctl/pci"
)

// State is one device of a resource as the plugin reports it.
type State struct {
	Address string
	Healthy bool
	Why     string // why it is unhealthy
	NUMA    int    // NUMA node, -1 when unknown
}

// Source lists a resource's devices and their health.
type Source interface {
	Scan() ([]State, error)
}

// SysfsSource finds a resource's devices in sysfs: those bound to vfio-pci
// when first seen, and afterwards, as long as the plugin runs, whatever
// became of them (so that a device unbound or removed is reported
// Unhealthy rather than vanishing from the kubelet's view).
type SysfsSource struct {
	Resource Resource

	mu    sync.Mutex
	known map[string]bool
}

// Scan implements Source.
func (s *SysfsSource) Scan() ([]State, error) {
	devs, err := pci.List()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.known == nil {
		s.known = map[string]bool{}
	}
	byAddr := map[string]*pci.Device{}
	for _, d := range devs {
		byAddr[d.Address] = d
		if d.Driver == pci.VFIODriver && s.Resource.Matches(d.Vendor, d.Device) {
			s.known[d.Address] = true
		}
	}
	var out []State
	for a := range s.known {
		st := State{Address: a, NUMA: -1}
		if d := byAddr[a]; d == nil {
			st.Why = "removed"
		} else {
			st.NUMA = d.NUMANode
			st.Why = unhealthy(d)
		}
		st.Healthy = st.Why == ""
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Address < out[j].Address })
	return out, nil
}

// unhealthy says why a device cannot be handed out now ("" when it can).
func unhealthy(d *pci.Device) string {
	if d.Driver != pci.VFIODriver {
		if d.Driver == "" {
			return "no driver"
		}
		return "bound to " + d.Driver
	}
	g, err := pci.GetGroup(d.IOMMUGroup)
	if err != nil {
		return err.Error()
	}
	if !g.Viable {
		var b []string
		for _, x := range g.Blockers {
			b = append(b, x.Device+" on "+x.Driver)
		}
		return fmt.Sprintf("IOMMU group %d is not viable (%s)", g.ID, strings.Join(b, ", "))
	}
	for _, m := range g.Devices {
		if m == d.Address {
			continue
		}
		if md, err := pci.Get(m); err == nil && md.IsBridge() {
			continue
		}
		return fmt.Sprintf("shares IOMMU group %d with %s (a group goes to one pod whole)", g.ID, m)
	}
	if _, err := os.Stat(d.VFIOGroup); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return d.VFIOGroup + " does not exist"
		}
		return err.Error()
	}
	return ""
}
