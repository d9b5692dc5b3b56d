package vfio

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/sysfs"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// fakePCIDevice is a Device over /dev/null named addr, with a fake sysfs
// tree holding addr's directory.
func fakePCIDevice(t *testing.T, addr string) (*Device, string) {
	t.Helper()
	root := t.TempDir()
	old := sysfs.Root
	sysfs.Root = root
	t.Cleanup(func() { sysfs.Root = old })
	dir := filepath.Join(root, "bus", "pci", "devices", addr)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open("/dev/null", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewCdev(fd, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, dir
}

// A kernel without runtime PM has no power/runtime_status: EnterLowPower
// must say so before asking (the kernel would answer 0 and do nothing).
// The guests prove the same on real kernels (TestLowPower).
func TestLowPowerWithoutRuntimePM(t *testing.T) {
	d, dir := fakePCIDevice(t, "0000:00:03.0")
	if err := os.WriteFile(filepath.Join(dir, "power_state"), []byte("D0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := d.EnterLowPower(nil)
	if !errors.Is(err, vfioerr.ErrNotSupported) || !strings.Contains(err.Error(), "CONFIG_PM") {
		t.Fatalf("EnterLowPower without runtime PM: %v, want ErrNotSupported naming CONFIG_PM", err)
	}
	if s, err := d.PowerState(); err != nil || s != D0 {
		t.Errorf("PowerState: %q, %v", s, err)
	}
}
