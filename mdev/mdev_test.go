package mdev

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/sysfs"
)

// fakeSysfs lays out what Linux 6.12 shows for the mtty sample with one
// mtty-2 instance, and points sysfs.Root at it.
func fakeSysfs(t *testing.T) string {
	root := t.TempDir()
	old := sysfs.Root
	sysfs.Root = root
	t.Cleanup(func() { sysfs.Root = old })
	mk := func(path, val string) {
		p := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(val+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, path string) {
		p := filepath.Join(root, path)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.Symlink(filepath.Join(root, target), p); err != nil {
			t.Fatal(err)
		}
	}
	types := "devices/virtual/mtty/mtty/mdev_supported_types/"
	mk(types+"mtty-1/name", "Single port serial")
	mk(types+"mtty-1/available_instances", "22")
	mk(types+"mtty-1/device_api", "vfio-pci")
	mk(types+"mtty-2/name", "Dual port serial")
	mk(types+"mtty-2/available_instances", "11")
	mk(types+"mtty-2/device_api", "vfio-pci")
	link("devices/virtual/mtty/mtty", "class/mdev_bus/mtty")
	const u = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"
	dev := "devices/virtual/mtty/mtty/" + u
	mk(dev+"/vfio-dev/vfio3/dev", "511:3")
	mk("kernel/iommu_groups/7/name", "vfio-noiommu")
	mk("kernel/iommu_groups/7/devices/"+u+"/.keep", "")
	link("kernel/iommu_groups/7", dev+"/iommu_group")
	link(types+"mtty-2", dev+"/mdev_type")
	link("bus/mdev/drivers/vfio_mdev", dev+"/driver")
	link(dev, "bus/mdev/devices/"+u)
	return u
}

func TestParentsAndDevices(t *testing.T) {
	u := fakeSysfs(t)
	ps, err := Parents()
	if err != nil || len(ps) != 1 || ps[0].Name != "mtty" || len(ps[0].Types) != 2 {
		t.Fatalf("Parents = %+v, %v", ps, err)
	}
	if ty := ps[0].Types[1]; ty.ID != "mtty-2" || ty.Name != "Dual port serial" || ty.Available != 11 || ty.DeviceAPI != "vfio-pci" {
		t.Errorf("type %+v", ty)
	}
	ds, err := Devices()
	if err != nil || len(ds) != 1 {
		t.Fatalf("Devices = %v, %v", ds, err)
	}
	// An mdev's group is named vfio-noiommu by VFIO (as a no-IOMMU
	// group is) yet its node is /dev/vfio/N.
	want := Device{UUID: u, Parent: "mtty", Type: "mtty-2", Group: 7, VFIOGroup: "/dev/vfio/7", VFIOCdev: "/dev/vfio/devices/vfio3", Driver: "vfio_mdev"}
	if *ds[0] != want {
		t.Errorf("device %+v, want %+v", *ds[0], want)
	}
	if sysfs.NoIOMMUDevice(u) {
		t.Error("the mdev is taken for a no-IOMMU device")
	}
}

func TestCreateRefusals(t *testing.T) {
	fakeSysfs(t)
	if _, err := Create("mtty", "mtty-2", "83B8F4F2-509F-382F-3C1E-E6BFE0FA1001"); !errors.Is(err, unix.EINVAL) {
		t.Errorf("an uppercase UUID: %v, want EINVAL", err)
	}
	if _, err := Create("mtty", "mtty-9", ""); !errors.Is(err, unix.ENOENT) {
		t.Errorf("an unknown type: %v, want ENOENT", err)
	}
	for range 100 {
		u, err := RandomUUID()
		if err != nil || !sysfs.IsMdevName(u) || u[14] != '4' {
			t.Fatalf("RandomUUID = %q, %v: want a version 4 UUID", u, err)
		}
	}
	if _, err := Get("0000:00:03.0"); !errors.Is(err, unix.EINVAL) {
		t.Errorf("Get of a PCI address: %v", err)
	}
}
