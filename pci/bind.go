package pci

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vfioctl/vfioctl/internal/sysfs"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// VFIODriver is the driver Bind moves devices to.
const VFIODriver = "vfio-pci"

// RecordDir keeps, per device, the driver it had before Bind, for Restore.
var RecordDir = "/run/vfioctl/bindings"

var (
	ErrAlreadyBound = errors.New("already bound to vfio-pci")
	ErrNotBound     = errors.New("not bound to vfio-pci")
	ErrNoRecord     = errors.New("no record of a previous driver (it was not bound by vfioctl)")
	ErrBusy         = errors.New("device nodes are open")
	// ErrNoIOMMU: the device has no IOMMU and binding would put it in
	// VFIO's no-IOMMU mode, which BindOptions.NoIOMMU must ask for.
	ErrNoIOMMU = errors.New("no IOMMU: binding would use VFIO's unsafe no-IOMMU mode (no isolation, taints the kernel)")
)

// BusyError names the processes holding a device's VFIO nodes open.
type BusyError struct {
	Address string
	Holders []Holder
	// Err, when set, is the failure the holders explain (an open of the
	// device that the kernel refused because another process has it).
	Err error
}

// Holder is a process with a file open.
type Holder struct {
	PID  int    `json:"pid"`
	Comm string `json:"comm"`
	Path string `json:"path"`
}

func (e *BusyError) Error() string {
	var parts []string
	for _, h := range e.Holders {
		parts = append(parts, fmt.Sprintf("pid %d (%s) has %s open", h.PID, h.Comm, h.Path))
	}
	if e.Err != nil {
		return fmt.Sprintf("%s is in use: %s (opening it: %v)", e.Address, strings.Join(parts, ", "), e.Err)
	}
	return fmt.Sprintf("%s is in use: %s; close it first (unbinding now would block until it does)", e.Address, strings.Join(parts, ", "))
}

func (e *BusyError) Is(t error) bool { return t == ErrBusy }

func (e *BusyError) Unwrap() error { return e.Err }

// HeldElsewhere explains a failed open of d: a *BusyError wrapping err when
// other processes hold d's VFIO nodes open (the kernel then answers EBUSY
// for a group, EINVAL for a cdev already bound to another iommufd), or
// err itself when none does.
func HeldElsewhere(d *Device, err error) error {
	var others []Holder
	for _, h := range Holders(d) {
		if h.PID != os.Getpid() {
			others = append(others, h)
		}
	}
	if len(others) == 0 {
		return err
	}
	return &BusyError{Address: d.Address, Holders: others, Err: err}
}

// BindOptions tune Bind.
type BindOptions struct {
	Group   bool          // bind every other member of the IOMMU group too
	Force   bool          // take devices from their drivers even when in use
	Timeout time.Duration // for the device nodes to appear (default 5 s)
	// NoIOMMU allows binding a device that has no IOMMU, in VFIO's unsafe
	// no-IOMMU mode: the device can then DMA anywhere in memory and the
	// kernel is tainted. Without it such a bind fails with ErrNoIOMMU.
	NoIOMMU bool
	// Owner, when set, is given the bound devices' VFIO nodes (SetOwner).
	Owner *Owner
}

// Bound is one device Bind moved to vfio-pci.
type Bound struct {
	Address   string `json:"address"`
	Previous  string `json:"previous_driver,omitempty"`
	GroupNode string `json:"group_node"`
	Cdev      string `json:"cdev,omitempty"`
	Owner     *Owner `json:"owner,omitempty"`
}

type record struct {
	Previous string `json:"previous_driver"`
	Time     string `json:"time"`
}

// Bind moves the device at addr (and with opts.Group its whole IOMMU group)
// to vfio-pci through driver_override, refusing when that would leave the
// group not viable or take a device in use from the host. It waits for
// /dev/vfio/N (and /dev/vfio/devices/vfioM where the kernel has cdevs).
// Shell equivalent: echo vfio-pci > driver_override; echo ADDR >
// driver/unbind; echo ADDR > /sys/bus/pci/drivers_probe.
func Bind(addr string, opts BindOptions) ([]Bound, error) {
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Second
	}
	d, err := Get(addr)
	if err != nil {
		return nil, err
	}
	if d.Driver == VFIODriver {
		return nil, fmt.Errorf("pci: %s: %w", d.Address, ErrAlreadyBound)
	}
	targets := []*Device{d}
	if d.IOMMUGroup < 0 {
		// Some IOMMUs (virtio-iommu) attach a device, and so give it a
		// group, only when a driver probes it: go on if one is registered,
		// and check the group once it exists (below).
		switch {
		case !iommuPresent() && sysfs.NoIOMMUEnabled() && !opts.NoIOMMU:
			return nil, fmt.Errorf("pci: %s: %w", d.Address, ErrNoIOMMU)
		case !iommuPresent() && !sysfs.NoIOMMUEnabled():
			return nil, fmt.Errorf("pci: %s has no IOMMU group and no IOMMU is registered: enable it (intel_iommu=on on Intel; check `vfioctl doctor`)", d.Address)
		}
	} else {
		if targets, err = groupTargets(d, opts.Group); err != nil {
			return nil, err
		}
	}
	if !opts.Force {
		for _, t := range targets {
			reasons, err := InUse(t)
			if err != nil {
				return nil, err
			}
			if len(reasons) > 0 {
				return nil, &UnsafeError{Address: t.Address, Reasons: reasons}
			}
		}
	}
	if err := ensureVFIODriver(); err != nil {
		return nil, err
	}
	var out []Bound
	for _, t := range targets {
		b, err := bindOne(t, opts.Timeout)
		if err != nil {
			return out, err
		}
		out = append(out, b)
	}
	if d.IOMMUGroup < 0 {
		// The group appeared with the driver: check it now, and undo the
		// bind if it is not viable.
		if now, err := Get(d.Address); err == nil && now.IOMMUGroup >= 0 {
			if now.NoIOMMU && !opts.NoIOMMU {
				// An IOMMU is registered but does not cover this device:
				// VFIO made a no-IOMMU group, which was not asked for.
				_, _ = Unbind(d.Address)
				return nil, fmt.Errorf("pci: %s: %w (no registered IOMMU covers it)", d.Address, ErrNoIOMMU)
			}
			if _, err := groupTargets(now, false); err != nil {
				_, _ = Unbind(d.Address)
				return nil, err
			}
		}
	}
	if opts.Owner != nil {
		for i := range out {
			if _, err := SetOwner(out[i].Address, *opts.Owner); err != nil {
				return out, err
			}
			out[i].Owner = opts.Owner
		}
	}
	return out, nil
}

// groupTargets returns the devices to bind for d: d itself, and with whole
// its driverless or host-bound group members. Without whole, members bound
// to host drivers make the group not viable, and that is an error.
func groupTargets(d *Device, whole bool) ([]*Device, error) {
	targets := []*Device{d}
	g, err := GetGroup(d.IOMMUGroup)
	if err != nil {
		return nil, err
	}
	var blockers []vfioerr.Blocker
	for _, m := range g.Devices {
		if m == d.Address {
			continue
		}
		md, err := Get(m)
		if err != nil {
			return nil, err
		}
		if md.IsBridge() || md.Driver == VFIODriver || md.Driver == "pci-stub" {
			continue
		}
		if whole {
			targets = append(targets, md)
		} else if !sysfs.ViableDriver(md.Driver) {
			blockers = append(blockers, vfioerr.Blocker{Device: md.Address, Driver: md.Driver})
		}
	}
	if len(blockers) > 0 {
		return nil, &vfioerr.GroupNotViableError{Address: d.Address, Group: d.IOMMUGroup, Blockers: blockers}
	}
	return targets, nil
}

// iommuPresent reports whether any IOMMU is registered with the kernel.
func iommuPresent() bool {
	ents, err := os.ReadDir(filepath.Join(sysfs.Root, "class", "iommu"))
	return err == nil && len(ents) > 0
}

func ensureVFIODriver() error {
	if _, err := os.Stat(filepath.Join(sysfs.Root, "bus", "pci", "drivers", VFIODriver)); err != nil {
		return fmt.Errorf("pci: the vfio-pci driver is not loaded: run `modprobe vfio-pci` (kernel option VFIO_PCI)")
	}
	return nil
}

func writeSysfs(path, val string) error {
	if err := os.WriteFile(path, []byte(val), 0); err != nil {
		return fmt.Errorf("pci: write %q to %s: %w", strings.TrimSpace(val), path, err)
	}
	return nil
}

func bindOne(d *Device, timeout time.Duration) (Bound, error) {
	dir := devDir(d.Address)
	if d.Driver != "" {
		if err := saveRecord(d.Address, d.Driver); err != nil {
			return Bound{}, err
		}
	}
	slog.Debug("binding to vfio-pci", "device", d.Address, "previous", d.Driver)
	if err := writeSysfs(filepath.Join(dir, "driver_override"), VFIODriver); err != nil {
		return Bound{}, err
	}
	if d.Driver != "" {
		if err := writeSysfs(filepath.Join(dir, "driver", "unbind"), d.Address); err != nil {
			return Bound{}, err
		}
	}
	if err := writeSysfs(filepath.Join(sysfs.Root, "bus", "pci", "drivers_probe"), d.Address); err != nil {
		return Bound{}, err
	}
	if drv := sysfs.Driver(d.Address); drv != VFIODriver {
		return Bound{}, fmt.Errorf("pci: %s: vfio-pci did not take the device (driver now %q); see the kernel log", d.Address, drv)
	}
	b := Bound{Address: d.Address, Previous: d.Driver}
	grp, err := sysfs.DeviceGroup(d.Address)
	if err != nil {
		return b, err
	}
	b.GroupNode = sysfs.GroupNode(grp)
	deadline := time.Now().Add(timeout)
	for {
		_, gerr := os.Stat(b.GroupNode)
		cdevOK := true
		if c := sysfs.DeviceCdev(d.Address); c != "" {
			b.Cdev = "/dev/vfio/devices/" + c
			_, err := os.Stat(b.Cdev)
			cdevOK = err == nil
		}
		if gerr == nil && cdevOK {
			return b, nil
		}
		if time.Now().After(deadline) {
			var have []string
			ents, _ := os.ReadDir("/dev/vfio")
			for _, e := range ents {
				have = append(have, e.Name())
			}
			missing := b.GroupNode
			if gerr == nil {
				missing = b.Cdev
			}
			return b, fmt.Errorf("pci: %s bound, but %s did not appear within %s (/dev/vfio holds %v; is devtmpfs/udev running?)", d.Address, missing, timeout, have)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func recordPath(addr string) string { return filepath.Join(RecordDir, addr+".json") }

func saveRecord(addr, drv string) error {
	if err := os.MkdirAll(RecordDir, 0o755); err != nil {
		return fmt.Errorf("pci: %w", err)
	}
	b, _ := json.Marshal(record{Previous: drv, Time: time.Now().UTC().Format(time.RFC3339)})
	return os.WriteFile(recordPath(addr), b, 0o644)
}

// Previous is the driver recorded for addr by Bind ("" and ErrNoRecord when none).
func Previous(addr string) (string, error) {
	a, err := ParseAddress(addr)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(recordPath(a.String()))
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("pci: %s: %w", a, ErrNoRecord)
	}
	if err != nil {
		return "", err
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return "", fmt.Errorf("pci: record %s: %w", recordPath(a.String()), err)
	}
	return r.Previous, nil
}

// Restore gives a device bound by Bind back to the driver it had.
func Restore(addr string) (string, error) {
	a, err := ParseAddress(addr)
	if err != nil {
		return "", err
	}
	if _, err := Previous(a.String()); err != nil {
		return "", err
	}
	return Unbind(a.String())
}

// Unbind releases a device from vfio-pci, clears driver_override and gives
// it back to the driver recorded by Bind (or lets the kernel pick one). It
// refuses, naming the processes, while the device's VFIO nodes are open.
// It returns the driver the device has afterwards.
func Unbind(addr string) (string, error) {
	d, err := Get(addr)
	if err != nil {
		return "", err
	}
	if d.Driver != VFIODriver {
		if d.Driver == "" {
			return "", fmt.Errorf("pci: %s: %w (it has no driver)", d.Address, ErrNotBound)
		}
		return "", fmt.Errorf("pci: %s: %w (its driver is %s)", d.Address, ErrNotBound, d.Driver)
	}
	if holders := Holders(d); len(holders) > 0 {
		return "", &BusyError{Address: d.Address, Holders: holders}
	}
	prev, _ := Previous(d.Address)
	dir := devDir(d.Address)
	if err := writeSysfs(filepath.Join(dir, "driver", "unbind"), d.Address); err != nil {
		return "", err
	}
	if err := writeSysfs(filepath.Join(dir, "driver_override"), "\n"); err != nil {
		return "", err
	}
	if prev != "" {
		if err := writeSysfs(filepath.Join(sysfs.Root, "bus", "pci", "drivers", prev, "bind"), d.Address); err != nil {
			return "", err
		}
	} else if err := writeSysfs(filepath.Join(sysfs.Root, "bus", "pci", "drivers_probe"), d.Address); err != nil {
		return "", err
	}
	_ = os.Remove(recordPath(d.Address))
	now := sysfs.Driver(d.Address)
	if prev != "" && now != prev {
		return now, fmt.Errorf("pci: %s: %s did not take the device back (driver now %q)", d.Address, prev, now)
	}
	return now, nil
}

// Holders lists processes with the device's VFIO group node or cdev open
// (a scan of /proc/*/fd).
func Holders(d *Device) []Holder { return HoldersOf(d.VFIOGroup, d.VFIOCdev) }

// HoldersOf lists processes with any of paths open ("" entries are
// skipped), by a scan of /proc/*/fd.
func HoldersOf(paths ...string) []Holder {
	want := map[string]bool{}
	for _, p := range paths {
		if p != "" {
			want[p] = true
		}
	}
	if len(want) == 0 {
		return nil
	}
	var out []Holder
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		target, err := os.Readlink(fd)
		if err != nil || !want[target] {
			continue
		}
		pidDir := filepath.Dir(filepath.Dir(fd))
		pid, _ := strconv.Atoi(filepath.Base(pidDir))
		comm, _ := os.ReadFile(filepath.Join(pidDir, "comm"))
		out = append(out, Holder{PID: pid, Comm: strings.TrimSpace(string(comm)), Path: target})
	}
	return out
}
