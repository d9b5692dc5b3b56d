package guest

import (
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/pci"
)

// The persistence tests run in two boots of their own (TestVMPersist on
// the host) sharing the nvme's disk, which holds the guest's /etc: the
// first saves bindings with `vfioctl bind --persist`, the second is a
// fresh boot that applies them the way the installed hooks do.
const persistPhaseEnv = "VFIOCTL_PERSIST_PHASE"

// mountStateDisk formats (first boot) or reuses the image-backed nvme's
// namespace as /etc, so what vfioctl writes there outlives the boot.
func mountStateDisk(t *testing.T, format bool) {
	t.Helper()
	addr := findDevice(t, wantDevices["nvme"])
	var disk string
	for deadline := time.Now().Add(10 * time.Second); disk == "" && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if d, err := pci.Get(addr); err == nil && len(d.BlockDevs) > 0 {
			disk = "/dev/" + d.BlockDevs[0]
		}
	}
	if disk == "" {
		t.Fatalf("the nvme %s has no block device", addr)
	}
	if format {
		if out, err := exec.Command("/bin/mke2fs", "-q", disk).CombinedOutput(); err != nil {
			t.Fatalf("mke2fs %s: %v %s", disk, err, out)
		}
	}
	if err := os.MkdirAll("/etc", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(disk, "/etc", "ext2", 0, ""); err != nil {
		t.Fatalf("mount %s on /etc: %v", disk, err)
	}
	t.Cleanup(func() {
		unix.Sync()
		if err := unix.Unmount("/etc", 0); err != nil {
			t.Errorf("unmount /etc: %v", err)
		}
	})
}

type persistDevs struct{ nic, kept, dropped string }

func persistDevices(t *testing.T) persistDevs {
	var e []string
	devs, _ := pci.List()
	for _, d := range devs {
		if d.Vendor == 0x1234 && d.Device == 0x11e8 {
			e = append(e, d.Address)
		}
	}
	if len(e) < 2 {
		t.Fatalf("two edus wanted, found %v", e)
	}
	return persistDevs{nic: findDevice(t, wantDevices["e1000e"]), kept: e[0], dropped: e[1]}
}

// TestPersistSave (first boot): bind --persist saves the NIC and an edu
// (with an owner) and installs the hooks; a third device saved and then
// `unbind --persist`ed is forgotten.
func TestPersistSave(t *testing.T) {
	if os.Getenv(persistPhaseEnv) != "save" {
		t.Skip("runs in the first of TestVMPersist's two boots")
	}
	mountStateDisk(t, true)
	d := persistDevices(t)
	if drv := sysfsDriver(d.nic); drv != "e1000e" {
		t.Fatalf("the NIC is on %q at boot, want e1000e", drv)
	}
	var res struct {
		Bound []pci.Bound    `json:"bound"`
		Saved *pci.Persisted `json:"saved"`
		Hooks []string       `json:"hooks_installed"`
	}
	if err := json.Unmarshal([]byte(mustExit(t, 0, "bind", "--persist", "--json", d.nic)), &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Bound) != 1 || res.Bound[0].Previous != "e1000e" || res.Saved == nil || res.Saved.Address != d.nic {
		t.Fatalf("bind --persist: %+v", res)
	}
	want := []string{"/etc/udev/rules.d/90-vfioctl.rules", "/etc/systemd/system/vfioctl-persist.service", "/etc/systemd/system/sysinit.target.wants/vfioctl-persist.service"}
	if strings.Join(res.Hooks, " ") != strings.Join(want, " ") {
		t.Errorf("hooks installed: %v, want %v", res.Hooks, want)
	}
	out := mustExit(t, 0, "bind", "--persist", "--owner", "65534:65534", d.kept)
	if !strings.Contains(out, "bound again at every boot") || strings.Contains(out, "installed") {
		t.Errorf("second bind --persist (hooks already there):\n%s", out)
	}
	mustExit(t, 0, "bind", "--persist", d.dropped)
	if out := mustExit(t, 0, "unbind", "--persist", d.dropped); !strings.Contains(out, "saved binding deleted") {
		t.Errorf("unbind --persist:\n%s", out)
	}
	if drv := sysfsDriver(d.dropped); drv != "" {
		t.Errorf("after unbind --persist the edu is on %q", drv)
	}
	var list []struct {
		Address string     `json:"address"`
		Owner   *pci.Owner `json:"owner"`
		Driver  string     `json:"driver_now"`
	}
	if err := json.Unmarshal([]byte(mustExit(t, 0, "persist", "list", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Address != d.kept || list[0].Owner == nil || list[1].Address != d.nic || list[1].Driver != pci.VFIODriver {
		t.Errorf("persist list: %+v", list)
	}
	mustExit(t, 6, "persist", "apply", d.dropped) // no saved binding
}

// TestPersistApply (second, fresh boot): nothing is bound at first; the
// systemd unit's ExecStart, run as systemd would, binds the saved devices
// with their options and leaves the forgotten one alone; then the NIC is
// removed and rescanned (a hot plug), its driver takes it, and the udev
// rule's RUN, run as udev would for an "add" whose TEST matches, binds it
// again. The rule's TEST does not match the forgotten device.
func TestPersistApply(t *testing.T) {
	if os.Getenv(persistPhaseEnv) != "apply" {
		t.Skip("runs in the second of TestVMPersist's two boots")
	}
	d := persistDevices(t)
	if drv := sysfsDriver(d.nic); drv != "e1000e" || sysfsDriver(d.kept) != "" {
		t.Fatalf("at boot: NIC on %q, edu on %q; want e1000e and none", drv, sysfsDriver(d.kept))
	}
	mountStateDisk(t, false)

	unit := readFile(t, "/etc/systemd/system/vfioctl-persist.service")
	if l, err := os.Readlink("/etc/systemd/system/sysinit.target.wants/vfioctl-persist.service"); err != nil || l != "../vfioctl-persist.service" || !strings.Contains(unit, "WantedBy=sysinit.target") {
		t.Errorf("the unit is not enabled: link %q (%v)", l, err)
	}
	execStart := field(t, unit, `(?m)^ExecStart=(.*)$`)
	out, err := exec.Command("/bin/sh", "-c", execStart).CombinedOutput()
	if err != nil {
		t.Fatalf("ExecStart %q: %v\n%s", execStart, err, out)
	}
	t.Logf("ExecStart=%s:\n%s", execStart, out)
	if drv := sysfsDriver(d.nic); drv != pci.VFIODriver {
		t.Errorf("after the unit the NIC is on %q", drv)
	}
	if drv := sysfsDriver(d.kept); drv != pci.VFIODriver {
		t.Errorf("after the unit the edu is on %q", drv)
	}
	if drv := sysfsDriver(d.dropped); drv != "" {
		t.Errorf("the forgotten edu is on %q", drv)
	}
	kept, _ := pci.Get(d.kept)
	var st syscall.Stat_t
	if err := syscall.Stat(kept.VFIOGroup, &st); err != nil || st.Uid != nobody || st.Gid != nobody {
		t.Errorf("%s: owner %d:%d (%v), want the saved 65534:65534", kept.VFIOGroup, st.Uid, st.Gid, err)
	}

	// A hot plug: remove and rescan the NIC; e1000e takes it back.
	writeSysfs(t, "/sys/bus/pci/devices/"+d.nic+"/remove", "1")
	writeSysfs(t, "/sys/bus/pci/rescan", "1")
	for deadline := time.Now().Add(10 * time.Second); sysfsDriver(d.nic) != "e1000e"; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after the rescan the NIC is on %q", sysfsDriver(d.nic))
		}
	}
	rule := readFile(t, "/etc/udev/rules.d/90-vfioctl.rules")
	test := field(t, rule, `TEST=="([^"]*)"`)
	run := field(t, rule, `RUN\+="([^"]*)"`)
	if !strings.Contains(rule, `ACTION=="add", SUBSYSTEM=="pci"`) {
		t.Errorf("the rule does not match PCI adds:\n%s", rule)
	}
	for _, dev := range []string{d.nic, d.dropped} {
		_, err := os.Stat(strings.ReplaceAll(test, "$kernel", dev))
		if dev == d.dropped {
			if err == nil {
				t.Errorf("the rule's TEST matches the forgotten %s", dev)
			}
			continue
		}
		if err != nil {
			t.Fatalf("the rule's TEST %q does not match %s: %v", test, dev, err)
		}
		cmd := strings.ReplaceAll(run, "$kernel", dev)
		if out, err := exec.Command("/bin/sh", "-c", cmd).CombinedOutput(); err != nil {
			t.Fatalf("RUN %q: %v\n%s", cmd, err, out)
		}
	}
	if drv := sysfsDriver(d.nic); drv != pci.VFIODriver {
		t.Errorf("after the udev rule the NIC is on %q", drv)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// field is the first submatch of re in s.
func field(t *testing.T, s, re string) string {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("no %s in:\n%s", re, s)
	}
	return m[1]
}

func writeSysfs(t *testing.T, path, v string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(v), 0); err != nil {
		t.Fatal(err)
	}
}
