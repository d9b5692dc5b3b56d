package driver

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/utils/ptr"

	"github.com/vfioctl/vfioctl/pci"
)

// Selection picks the functions the driver publishes, like the device
// plugin's policy flags: by vendor:device, by class prefix, or by address.
// A function matching any of them is picked.
type Selection struct {
	IDs       [][2]uint16 // vendor, device
	Classes   []string    // hex class prefixes: "02" network, "0108" NVMe, "030000" VGA
	Addresses []string
}

// ParseSelection reads "vendor:device", "class=HEX" and "addr=ADDRESS"
// words, comma-separated ("1234:11e8,class=0108").
func ParseSelection(s string) (Selection, error) {
	var sel Selection
	for _, w := range strings.Split(s, ",") {
		w = strings.TrimSpace(w)
		switch {
		case w == "":
		case strings.HasPrefix(w, "class="):
			c := strings.ToLower(strings.TrimPrefix(w, "class="))
			if _, err := strconv.ParseUint(c, 16, 32); err != nil || len(c)%2 != 0 || len(c) > 6 {
				return sel, fmt.Errorf("selection %q: a class is 2, 4 or 6 hex digits (02, 0108, 030000)", w)
			}
			sel.Classes = append(sel.Classes, c)
		case strings.HasPrefix(w, "addr="):
			a, err := pci.ParseAddress(strings.TrimPrefix(w, "addr="))
			if err != nil {
				return sel, fmt.Errorf("selection %q: %w", w, err)
			}
			sel.Addresses = append(sel.Addresses, a.String())
		default:
			v, d, ok := strings.Cut(w, ":")
			vi, err1 := strconv.ParseUint(v, 16, 16)
			di, err2 := strconv.ParseUint(d, 16, 16)
			if !ok || err1 != nil || err2 != nil {
				return sel, fmt.Errorf("selection %q: want vendor:device in hex (1234:11e8), class=HEX or addr=ADDRESS", w)
			}
			sel.IDs = append(sel.IDs, [2]uint16{uint16(vi), uint16(di)})
		}
	}
	if len(sel.IDs)+len(sel.Classes)+len(sel.Addresses) == 0 {
		return sel, fmt.Errorf("the selection picks nothing: give vendor:device, class=HEX or addr=ADDRESS")
	}
	return sel, nil
}

// Matches reports whether d is picked.
func (s Selection) Matches(d *pci.Device) bool {
	if slices.Contains(s.IDs, [2]uint16{d.Vendor, d.Device}) || slices.Contains(s.Addresses, d.Address) {
		return true
	}
	class := fmt.Sprintf("%06x", d.Class)
	for _, c := range s.Classes {
		if strings.HasPrefix(class, c) {
			return true
		}
	}
	return false
}

// Published is one DRA device: a function alone in its IOMMU group, or a
// group of several, claimed whole.
type Published struct {
	Name      string   // the DRA device name: pci-0000-00-03-0, or group-7
	Addresses []string // the functions it hands out (a group's, sorted)
	Group     int
	Device    resourceapi.Device
}

// DeviceName is the DRA name of a function (DNS label: no colons or dots).
func DeviceName(addr string) string {
	return "pci-" + strings.NewReplacer(":", "-", ".", "-").Replace(addr)
}

// The attributes each device carries, in the driver's domain (unqualified)
// and resource.kubernetes.io's standard ones.
const (
	AttrAddress   = "address"
	AttrVendor    = "vendor"
	AttrDevice    = "device"
	AttrClass     = "class"
	AttrNUMA      = "numaNode"
	AttrGroup     = "iommuGroup"
	AttrViable    = "viable"
	AttrSRIOV     = "sriov" // "pf", "vf" or "none"
	AttrPhysFn    = "physfn"
	AttrDriver    = "driver"
	AttrCdev      = "cdev" // the kernel offers the device cdev (iommufd backend)
	AttrFunctions = "functions"
	AttrMembers   = "members"
	AttrPCIeRoot  = "resource.kubernetes.io/pcieRoot"
	AttrPCIBusID  = "resource.kubernetes.io/pciBusID"
)

// Publish turns the host's functions into DRA devices: each picked function
// whose IOMMU group holds no other function is one device; a group of
// several is one device only when every function in it (bridges aside) is
// picked (claiming it binds them all). Functions with no IOMMU group (no
// IOMMU, or not attached yet) and bridges are left out; skipped says why
// for each picked function left out.
func Publish(devs []*pci.Device, sel Selection, groups map[int]*pci.Group, h Host) (out []Published, skipped map[string]string) {
	skipped = map[string]string{}
	byAddr := map[string]*pci.Device{}
	for _, d := range devs {
		byAddr[d.Address] = d
	}
	done := map[int]bool{}
	for _, d := range devs {
		if !sel.Matches(d) || d.IsBridge() {
			continue
		}
		if d.IOMMUGroup < 0 {
			skipped[d.Address] = "no IOMMU group" // no IOMMU, or virtio-iommu's before a driver first probes it
			continue
		}
		if done[d.IOMMUGroup] {
			continue
		}
		g := groups[d.IOMMUGroup]
		if g == nil {
			skipped[d.Address] = fmt.Sprintf("IOMMU group %d unreadable", d.IOMMUGroup)
			continue
		}
		if !slices.Contains(g.Devices, d.Address) {
			// devs and groups are read one after the other, and a group
			// that changed in between (under virtio-iommu, groups come
			// and go as devices change drivers) may no longer hold the
			// device. The next publication reads them again.
			skipped[d.Address] = fmt.Sprintf("IOMMU group %d no longer holds it (the groups changed while they were read)", d.IOMMUGroup)
			continue
		}
		var members []*pci.Device
		var unpicked []string
		for _, a := range g.Devices {
			m := byAddr[a]
			if m == nil || m.IsBridge() {
				continue
			}
			if !sel.Matches(m) {
				unpicked = append(unpicked, a)
			}
			members = append(members, m)
		}
		done[d.IOMMUGroup] = true
		if len(unpicked) > 0 {
			for _, m := range members {
				if sel.Matches(m) {
					skipped[m.Address] = fmt.Sprintf("IOMMU group %d also holds %s, which the selection does not pick", g.ID, strings.Join(unpicked, ", "))
				}
			}
			continue
		}
		out = append(out, publish(members, g, h))
	}
	slices.SortFunc(out, func(a, b Published) int { return strings.Compare(a.Name, b.Name) })
	return out, skipped
}

func publish(members []*pci.Device, g *pci.Group, h Host) Published {
	first := members[0]
	p := Published{Name: DeviceName(first.Address), Group: g.ID}
	for _, m := range members {
		p.Addresses = append(p.Addresses, m.Address)
	}
	slices.Sort(p.Addresses)
	if len(members) > 1 {
		p.Name = fmt.Sprintf("group-%d", g.ID)
	}
	str := func(s string) resourceapi.DeviceAttribute { return resourceapi.DeviceAttribute{StringValue: ptr.To(s)} }
	attrs := map[resourceapi.QualifiedName]resourceapi.DeviceAttribute{
		AttrAddress:   str(first.Address),
		AttrVendor:    str(fmt.Sprintf("%04x", first.Vendor)),
		AttrDevice:    str(fmt.Sprintf("%04x", first.Device)),
		AttrClass:     str(fmt.Sprintf("%06x", first.Class)),
		AttrGroup:     {IntValue: ptr.To(int64(g.ID))},
		AttrViable:    {BoolValue: ptr.To(g.Viable)},
		AttrDriver:    str(orNone(first.Driver)),
		AttrCdev:      {BoolValue: ptr.To(h.CdevSupported())},
		AttrFunctions: {IntValue: ptr.To(int64(len(members)))},
		AttrPCIBusID:  str(first.Address),
	}
	if first.NUMANode >= 0 {
		attrs[AttrNUMA] = resourceapi.DeviceAttribute{IntValue: ptr.To(int64(first.NUMANode))}
	}
	switch {
	case first.PhysFn != "":
		attrs[AttrSRIOV], attrs[AttrPhysFn] = str("vf"), str(first.PhysFn)
	case first.TotalVFs > 0:
		attrs[AttrSRIOV] = str("pf")
	default:
		attrs[AttrSRIOV] = str("none")
	}
	if len(members) > 1 {
		attrs[AttrMembers] = str(strings.Join(p.Addresses, ","))
	}
	if root, err := h.PCIeRoot(first.Address); err == nil {
		attrs[AttrPCIeRoot] = str(root)
	}
	p.Device = resourceapi.Device{Name: p.Name, Attributes: attrs}
	return p
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
