package vfio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/internal/sysfs"
	"github.com/vfioctl/vfioctl/uapi"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// PowerState is a PCI function's power state as the kernel tracks it
// (sysfs power_state): "D0", "D3hot", "D3cold"...
type PowerState string

// The states low power moves a device between.
const (
	D0    PowerState = "D0"
	D3hot PowerState = "D3hot"
)

// lowPowerSince is the Linux that added the LOW_POWER features.
const lowPowerSince = "6.0"

const noLowPower = "only vfio-pci devices have runtime low power (not mediated or platform devices)"

// suspendWait bounds how long EnterLowPower waits for the kernel's runtime
// suspend, which runs after the ioctl returns.
var suspendWait = 2 * time.Second

// sysfsDir is the device's sysfs directory: found from a cdev's char
// device number, else from its name when that is a PCI address.
func (d *Device) sysfsDir() (string, error) {
	var st unix.Stat_t
	err := d.fd.Do(func(fd int) error { return unix.Fstat(fd, &st) })
	if err == nil && st.Mode&unix.S_IFMT == unix.S_IFCHR {
		node := filepath.Join(sysfs.Root, "dev", "char", fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev)))
		if dir, err := filepath.EvalSymlinks(node); err == nil {
			return filepath.Dir(filepath.Dir(dir)), nil // DEVICE/vfio-dev/vfioN
		}
	}
	dir := filepath.Join(sysfs.Root, "bus", "pci", "devices", filepath.Base(d.Name()))
	if _, err := os.Stat(dir); err != nil {
		return "", kernel.Call{Op: "find the device in sysfs", Object: d.Name()}.Fail(err)
	}
	return dir, nil
}

// PowerState reads the device's PCI power state from sysfs (no device
// access: it does not wake a suspended device). A device without the PCI
// power management capability is always D0.
func (d *Device) PowerState() (PowerState, error) {
	dir, err := d.sysfsDir()
	if err != nil {
		return "", err
	}
	return d.powerState(dir)
}

func (d *Device) powerState(dir string) (PowerState, error) {
	b, err := os.ReadFile(filepath.Join(dir, "power_state"))
	if err != nil {
		return "", kernel.Call{Op: "read power_state", Object: d.Name()}.Fail(err)
	}
	return PowerState(strings.TrimSpace(string(b))), nil
}

// runtimeStatus is the kernel's runtime PM status of the device
// ("active", "suspended"...), or "" when the kernel has no runtime PM.
func runtimeStatus(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "power", "runtime_status"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// EnterLowPower is VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY (Linux 6.0): the
// kernel may put the idle device in a low power state (D3hot) until the
// user calls ExitLowPower. With wake non-nil it is
// LOW_POWER_ENTRY_WITH_WAKEUP: when something wakes the device (a config
// or BAR access, a PME) the kernel signals wake and leaves low power by
// itself. Without wake, an access wakes the device only for its duration.
//
// The kernel suspends the device after the call returns; EnterLowPower
// waits for that and returns the state reached. Where the call could not
// change anything it returns vfioerr.ErrNotSupported instead of success:
// a kernel without runtime PM (CONFIG_PM) answers 0 and leaves the device
// as it is, and a function without the PCI power management capability
// suspends in D0 (the device is then taken out of low power again).
func (d *Device) EnterLowPower(wake *Eventfd) (PowerState, error) {
	dir, err := d.sysfsDir()
	if err != nil {
		return "", err
	}
	feature := "VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY on " + d.Name()
	if runtimeStatus(dir) == "" {
		return "", &vfioerr.NotSupportedError{Feature: feature,
			Reason: "the kernel has no runtime power management (CONFIG_PM): it answers success and leaves the device in D0"}
	}
	f := deviceFeature{flags: uapi.VFIO_DEVICE_FEATURE_SET | uapi.VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY, absent: noLowPower, since: lowPowerSince,
		hints: kernel.Hints{unix.EINVAL: kernel.Say("the device is already in low power (ExitLowPower first)")}}
	if wake != nil {
		efd, err := wake.FD()
		if err != nil {
			return "", err
		}
		arg := make([]byte, 8)
		binary.NativeEndian.PutUint32(arg, uint32(int32(efd)))
		f.flags = uapi.VFIO_DEVICE_FEATURE_SET | uapi.VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP
		f.payload, f.args = arg, fmt.Sprintf("eventfd %d", efd)
	}
	if _, err := d.feature(f); err != nil {
		return "", err
	}
	deadline := time.Now().Add(suspendWait)
	for runtimeStatus(dir) != "suspended" {
		if time.Now().After(deadline) {
			control, _ := os.ReadFile(filepath.Join(dir, "power", "control"))
			return "", errors.Join(kernel.Call{Op: "VFIO_DEVICE_FEATURE", Object: d.Name(), Args: "set LOW_POWER_ENTRY"}.
				Refuse(unix.EBUSY, fmt.Sprintf("the device did not suspend within %v (runtime_status %s, power/control %s)",
					suspendWait, runtimeStatus(dir), strings.TrimSpace(string(control)))), d.ExitLowPower())
		}
		time.Sleep(2 * time.Millisecond)
	}
	s, err := d.powerState(dir)
	if err != nil {
		return "", errors.Join(err, d.ExitLowPower())
	}
	if s == D0 {
		return s, errors.Join(&vfioerr.NotSupportedError{Feature: feature,
			Reason: "the function has no PCI power management capability: it suspends in D0"}, d.ExitLowPower())
	}
	return s, nil
}

// ExitLowPower is VFIO_DEVICE_FEATURE_LOW_POWER_EXIT: the device returns
// to D0 and stays there. Calling it when the device is not in low power
// (or after a wakeup already took it out) does nothing.
func (d *Device) ExitLowPower() error {
	_, err := d.feature(deviceFeature{flags: uapi.VFIO_DEVICE_FEATURE_SET | uapi.VFIO_DEVICE_FEATURE_LOW_POWER_EXIT,
		absent: noLowPower, since: lowPowerSince})
	return err
}
