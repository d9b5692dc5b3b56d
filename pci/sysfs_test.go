package pci

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/vfioctl/vfioctl/internal/sysfs"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// fakeSysfs builds a sysfs tree: devices with class, IDs and drivers in
// IOMMU groups, the way the kernel lays them out (symlinks included).
func fakeSysfs(t *testing.T) {
	root := t.TempDir()
	old := sysfs.Root
	oldRec := RecordDir
	sysfs.Root, RecordDir = root, filepath.Join(root, "run")
	t.Cleanup(func() { sysfs.Root, RecordDir = old, oldRec })
	mk := func(p string) {
		if err := os.MkdirAll(filepath.Join(root, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, v string) {
		if err := os.WriteFile(filepath.Join(root, p), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, name string) {
		if err := os.Symlink(filepath.Join(root, target), filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	mk("bus/pci/devices")
	mk("class/block")
	for _, d := range []struct{ addr, class, driver, group string }{
		{"0000:00:1f.0", "0x060100", "", "4"},
		{"0000:00:1f.2", "0x010601", "ahci", "4"},
		{"0000:00:03.0", "0x00ff00", "vfio-pci", "1"},
		{"0000:00:05.0", "0x010802", "nvme", "3"},
	} {
		dev := "devices/pci0000:00/" + d.addr
		mk(dev)
		write(dev+"/vendor", "0x8086")
		write(dev+"/device", "0x2918")
		write(dev+"/class", d.class)
		mk("kernel/iommu_groups/" + d.group + "/devices")
		link(dev, "kernel/iommu_groups/"+d.group+"/devices/"+d.addr)
		link("kernel/iommu_groups/"+d.group, dev+"/iommu_group")
		if d.driver != "" {
			mk("bus/pci/drivers/" + d.driver)
			link("bus/pci/drivers/"+d.driver, dev+"/driver")
		}
		link(dev, "bus/pci/devices/"+d.addr)
	}
	// An NVMe namespace directly under its controller, and a partition.
	ns := "devices/pci0000:00/0000:00:05.0/nvme/nvme0/nvme0n1"
	mk(ns + "/nvme0n1p1")
	write(ns+"/nvme0n1p1/partition", "1")
	link(ns, "class/block/nvme0n1")
	link(ns+"/nvme0n1p1", "class/block/nvme0n1p1")
}

func TestGroupViability(t *testing.T) {
	fakeSysfs(t)
	g, err := GetGroup(4)
	if err != nil {
		t.Fatal(err)
	}
	if g.Viable || len(g.Blockers) != 1 || g.Blockers[0] != (vfioerr.Blocker{Device: "0000:00:1f.2", Driver: "ahci"}) {
		t.Fatalf("group 4 = %+v, want not viable because of 00:1f.2 on ahci", g)
	}
	if g, _ := GetGroup(1); !g.Viable {
		t.Fatalf("group 1 (vfio-pci only) = %+v, want viable", g)
	}
	gs, err := Groups()
	if err != nil || len(gs) != 3 {
		t.Fatalf("Groups = %v, %v", gs, err)
	}
	// Binding 00:1f.0 alone is refused, naming the blocker.
	d, _ := Get("00:1f.0")
	_, err = groupTargets(d, false)
	var nv *vfioerr.GroupNotViableError
	if !errors.As(err, &nv) || !errors.Is(err, vfioerr.ErrGroupNotViable) || nv.Blockers[0].Driver != "ahci" {
		t.Fatalf("groupTargets = %v", err)
	}
	// With --group, both functions are targets.
	if ts, err := groupTargets(d, true); err != nil || len(ts) != 2 {
		t.Fatalf("groupTargets(whole) = %v, %v", ts, err)
	}
}

func TestGetDevice(t *testing.T) {
	fakeSysfs(t)
	d, err := Get("0000:00:05.0")
	if err != nil {
		t.Fatal(err)
	}
	if d.Driver != "nvme" || d.IOMMUGroup != 3 || d.Class != 0x010802 || len(d.BlockDevs) != 1 || d.BlockDevs[0] != "nvme0n1" {
		t.Fatalf("device = %+v", d)
	}
	if _, err := Get("0000:00:09.0"); !errors.Is(err, ErrNoDevice) {
		t.Fatalf("Get of a missing device = %v", err)
	}
	if _, err := Get("../x"); err == nil {
		t.Fatal("Get accepted a traversal")
	}
	if _, err := Previous("0000:00:05.0"); !errors.Is(err, ErrNoRecord) {
		t.Fatalf("Previous without record = %v", err)
	}
}
