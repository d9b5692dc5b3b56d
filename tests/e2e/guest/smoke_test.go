package guest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/ioasid"
	"github.com/vfioctl/vfioctl/uapi"
	"github.com/vfioctl/vfioctl/vfio"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// The emulated devices every profile carries, by vendor:device ID.
var wantDevices = map[string]string{
	"edu":    "0x1234:0x11e8",
	"e1000e": "0x8086:0x10d3",
	"nvme":   "0x1b36:0x0010",
}

func sysfsRead(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// findDevice returns the PCI address of the first device with vendor:device id.
func findDevice(t testing.TB, id string) string {
	t.Helper()
	ents, err := os.ReadDir("/sys/bus/pci/devices")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		d := filepath.Join("/sys/bus/pci/devices", e.Name())
		if sysfsRead(t, d+"/vendor")+":"+sysfsRead(t, d+"/device") == id {
			return e.Name()
		}
	}
	t.Fatalf("no PCI device %s in the guest", id)
	return ""
}

func sysfsDriver(bdf string) string {
	l, err := os.Readlink("/sys/bus/pci/devices/" + bdf + "/driver")
	if err != nil {
		return ""
	}
	return filepath.Base(l)
}

func TestSmokeDevicesInOwnGroups(t *testing.T) {
	for name, id := range wantDevices {
		bdf := findDevice(t, id)
		link, err := os.Readlink("/sys/bus/pci/devices/" + bdf + "/iommu_group")
		if err != nil && Profile == "virtio" && sysfsDriver(bdf) == "" {
			// virtio-iommu attaches a device when a driver probes it: a
			// driverless device has no group yet (TestSmokeBindEdu checks
			// that binding gives it one).
			t.Logf("%s (%s): no driver and, under virtio-iommu, no group until bound", name, bdf)
			continue
		}
		if err != nil {
			t.Fatalf("%s (%s) has no IOMMU group: is the vIOMMU on? %v", name, bdf, err)
		}
		members, err := os.ReadDir(filepath.Join("/sys/bus/pci/devices", bdf, "iommu_group", "devices"))
		if err != nil {
			t.Fatal(err)
		}
		if len(members) != 1 || members[0].Name() != bdf {
			t.Errorf("%s (%s) group %s has members %v, want only itself", name, bdf, filepath.Base(link), members)
		}
		t.Logf("%s at %s in IOMMU group %s", name, bdf, filepath.Base(link))
	}
}

// ioasAlloc issues IOMMU_IOAS_ALLOC, which only iommufd answers.
func ioasAlloc(fd int) (uint32, error) {
	cmd := uapi.IommuIoasAlloc{Size: uint32(unsafe.Sizeof(uapi.IommuIoasAlloc{}))}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uapi.IOMMU_IOAS_ALLOC, uintptr(unsafe.Pointer(&cmd)))
	if errno != 0 {
		return 0, errno
	}
	return cmd.OutIoasId, nil
}

func TestSmokeIommufd(t *testing.T) {
	if !backendSupported(t, vfio.GroupIOMMUFD) {
		if _, err := os.Stat("/dev/iommu"); err == nil {
			t.Fatal("/dev/iommu exists, yet the iommufd backends say the kernel lacks it")
		}
		_, err := ioasid.Open()
		expect(t, "ioasid.Open without iommufd", err, vfioerr.ErrNotSupported, "Linux 6.2", "CONFIG_IOMMUFD")
		t.Skip("no iommufd on this kernel (Linux 6.2+), as ioasid.Open says")
	}
	fd, err := unix.Open("/dev/iommu", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("/dev/iommu: %v", err)
	}
	defer unix.Close(fd)
	if _, err := ioasAlloc(fd); err != nil {
		t.Fatalf("IOMMU_IOAS_ALLOC on /dev/iommu: %v", err)
	}
}

// On the compat kernel /dev/vfio/vfio is iommufd: it answers IOAS_ALLOC. On
// the legacy and 6.1 kernels it is the type1 container, which does not.
func TestSmokeContainerIdentity(t *testing.T) {
	fd, err := unix.Open("/dev/vfio/vfio", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("/dev/vfio/vfio: %v", err)
	}
	defer unix.Close(fd)
	_, err = ioasAlloc(fd)
	switch Kernel {
	case "compat":
		if err != nil {
			t.Fatalf("compat kernel: IOMMU_IOAS_ALLOC on /dev/vfio/vfio: %v; want iommufd to answer", err)
		}
	case "legacy", "linux61":
		// The type1 container passes unknown ioctls to its IOMMU driver,
		// and with none set yet answers EINVAL.
		if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOTTY) {
			t.Fatalf("legacy kernel: IOMMU_IOAS_ALLOC on /dev/vfio/vfio = %v, want the type1 container's EINVAL/ENOTTY", err)
		}
	default:
		t.Fatalf("unknown kernel variant %q", Kernel)
	}
	v, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uapi.VFIO_GET_API_VERSION, 0)
	if errno != 0 || v != uapi.VFIO_API_VERSION {
		t.Errorf("VFIO_GET_API_VERSION = %d, %v", v, errno)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestSmokeBindEdu(t *testing.T) {
	bdf := findDevice(t, wantDevices["edu"])
	dev := "/sys/bus/pci/devices/" + bdf
	write := func(path, val string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(val), 0); err != nil {
			t.Fatalf("write %q to %s: %v", val, path, err)
		}
	}
	write(dev+"/driver_override", "vfio-pci")
	if _, err := os.Stat(dev + "/driver"); err == nil {
		write(dev+"/driver/unbind", bdf)
	}
	write("/sys/bus/pci/drivers_probe", bdf)
	t.Cleanup(func() {
		_ = os.WriteFile(dev+"/driver/unbind", []byte(bdf), 0)
		_ = os.WriteFile(dev+"/driver_override", []byte("\n"), 0)
	})
	group := filepath.Base(must(os.Readlink(dev + "/iommu_group")))
	waitFor(t, "/dev/vfio/"+group, func() bool { _, err := os.Stat("/dev/vfio/" + group); return err == nil })
	drv := filepath.Base(must(os.Readlink(dev + "/driver")))
	if drv != "vfio-pci" {
		t.Fatalf("driver = %s, want vfio-pci", drv)
	}
	cdevs, err := os.ReadDir(dev + "/vfio-dev")
	if Kernel == "linux61" || Profile == "pseries" {
		// Linux 6.1 has the vfio-dev class, but its devices have no device
		// number (no char device): the cdev came in 6.6. A kernel with
		// SPAPR_TCE_IOMMU builds none either.
		for _, c := range cdevs {
			if _, err := os.Stat(dev + "/vfio-dev/" + c.Name() + "/dev"); err == nil {
				t.Fatalf("%s gave %s a device cdev number", Kernel, c.Name())
			}
		}
		if ents, _ := os.ReadDir("/dev/vfio/devices"); len(ents) > 0 {
			t.Fatalf("%s has /dev/vfio/devices entries: %v", Kernel, ents)
		}
		t.Logf("edu %s bound: /dev/vfio/%s (no device cdev on %s)", bdf, group, Kernel)
		return
	}
	if err != nil || len(cdevs) != 1 {
		t.Fatalf("%s/vfio-dev: %v %v", dev, cdevs, err)
	}
	waitFor(t, "/dev/vfio/devices/"+cdevs[0].Name(), func() bool {
		_, err := os.Stat("/dev/vfio/devices/" + cdevs[0].Name())
		return err == nil
	})
	t.Logf("edu %s bound: /dev/vfio/%s and /dev/vfio/devices/%s", bdf, group, cdevs[0].Name())
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
