package guest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vfioctl/vfioctl/dma"
	"github.com/vfioctl/vfioctl/internal/sysfs"
	"github.com/vfioctl/vfioctl/pci"
)

// TestSMMUv3 (arm64 virt): the edus have no IOMMU group when the guest
// boots (the SMMU probes them only when a driver binds) and `pci.Bind`
// handles that: each has a group of its own once on vfio-pci. Every
// backend's IOVA ranges leave out the ITS doorbell's MSI window QEMU's virt
// reserves (0x8000000-0x80fffff), and maps inside the ranges work right up
// to its edges. The SMMU is the one IOMMU in sysfs.
func TestSMMUv3(t *testing.T) {
	if Profile != "smmuv3" {
		t.Skip("runs in the arm64 boot (TestVM/arm64/smmuv3)")
	}
	iommus, _ := filepath.Glob("/sys/class/iommu/*")
	if len(iommus) != 1 || !strings.Contains(filepath.Base(iommus[0]), "smmu") {
		t.Errorf("IOMMUs in sysfs: %v, want one SMMUv3", iommus)
	}
	addrs := eduAddrs(t)
	groups := map[int]bool{}
	for _, a := range addrs {
		if g, ok := bootGroups[a]; !ok || g != -1 {
			t.Errorf("%s had IOMMU group %d at boot (present %v), want none before a driver binds", a, g, ok)
		}
		d, err := pci.Get(a)
		if err != nil {
			t.Fatal(err)
		}
		if d.IOMMUGroup < 0 || groups[d.IOMMUGroup] {
			t.Errorf("%s on vfio-pci: group %d (seen %v), want one of its own", a, d.IOMMUGroup, groups)
		}
		groups[d.IOMMUGroup] = true
	}
	// The CLI sees the same: doctor finds the SMMU ready, list and groups
	// show the edus in their own groups.
	doctor := mustExit(t, 0, "doctor")
	t.Logf("vfioctl doctor:\n%s", doctor)
	var groupsOut []pci.Group
	if err := json.Unmarshal([]byte(mustExit(t, 0, "groups", "--json")), &groupsOut); err != nil {
		t.Fatal(err)
	}
	for _, g := range groupsOut {
		if groups[g.ID] && (len(g.Devices) != 1 || !g.Viable) {
			t.Errorf("vfioctl groups: %+v", g)
		}
	}
	if list := mustExit(t, 0, "list"); !strings.Contains(list, addrs[0]) || !strings.Contains(list, "vfio-pci") {
		t.Errorf("vfioctl list:\n%s", list)
	}
	const msiStart, msiLast = 0x8000000, 0x80fffff
	grp, _ := sysfs.DeviceGroup(addrs[0])
	found := false
	for _, r := range reservedRegions(t, grp) {
		found = found || r.Start == msiStart && r.Last == msiLast
	}
	if !found {
		b, _ := os.ReadFile(filepath.Join("/sys/kernel/iommu_groups", strconv.Itoa(grp), "reserved_regions"))
		t.Fatalf("group %d reserves no MSI window %#x-%#x:\n%s", grp, msiStart, msiLast, b)
	}
	forModes(t, func(t *testing.T, m mode) {
		e := openEdu(t, m)
		ranges, err := e.Mapper().IOVARanges()
		if err != nil {
			t.Fatal(err)
		}
		below, above := false, false
		for _, r := range ranges {
			if r.Start <= msiLast && msiStart <= r.Last {
				t.Fatalf("IOVA range %v overlaps the MSI window", r)
			}
			below = below || r.Last == msiStart-1
			above = above || r.Start == msiLast+1
		}
		if !below || !above {
			t.Fatalf("ranges %v do not end at the MSI window %#x-%#x", ranges, msiStart, msiLast)
		}
		buf, err := dma.CreateBuffer(8192) // edu's round trip uses two pages
		if err != nil {
			t.Fatal(err)
		}
		defer buf.Close()
		for _, iova := range []uint64{msiStart - 8192, msiLast + 1} {
			if err := e.Mapper().Map(iova, buf.Bytes(), dma.ReadWrite); err != nil {
				t.Fatalf("map at %#x, next to the MSI window: %v", iova, err)
			}
			if err := e.Roundtrip(buf, iova, 256); err != nil {
				t.Fatalf("DMA through %#x: %v", iova, err)
			}
			if err := e.Mapper().Unmap(iova, 8192); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.Mapper().Map(msiStart, buf.Bytes(), dma.ReadWrite); err == nil {
			t.Errorf("%s: a map inside the MSI window succeeded", m.name)
		}
		t.Logf("%s: ranges %v", m.name, ranges)
	})
}
