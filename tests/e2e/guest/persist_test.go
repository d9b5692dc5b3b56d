package guest

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/mdev"
	"github.com/vfioctl/vfioctl/pci"
	"github.com/vfioctl/vfioctl/vfio"
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
	saveMdev(t)
}

// The mediated device TestVMPersist carries across its two boots, and
// where its migration stream and the state it holds are kept.
const (
	persistMdev   = "5f0c6a41-2d6e-4c1b-9e3a-7b8d0f1e2a3c"
	persistStream = "/etc/vfioctl-test/mtty.state"
	persistWant   = "/etc/vfioctl-test/mtty.want"
)

// saveMdev (first boot): an mtty created --persist, its UART programmed,
// its state saved by vfioctl migrate save to the state disk.
func saveMdev(t *testing.T) {
	needMdev(t, "mtty")
	var res struct {
		UUID    string           `json:"uuid"`
		Defined *mdev.Definition `json:"defined"`
		Hooks   []string         `json:"hooks_installed"`
	}
	if err := json.Unmarshal([]byte(mustExit(t, 0, "mdev", "create", "--persist", "--json", "--uuid", persistMdev, "mtty", "mtty-2")), &res); err != nil {
		t.Fatal(err)
	}
	if res.UUID != persistMdev || res.Defined == nil || res.Defined.Type != "mtty-2" || len(res.Hooks) != 0 {
		t.Errorf("mdev create --persist (hooks already installed by bind --persist): %+v", res)
	}
	want := randomUART(t)
	h, err := vfio.Open(persistMdev, &vfio.Options{Backend: vfio.Legacy})
	if err != nil {
		t.Fatal(err)
	}
	openUART(t, h).program(want)
	h.Close()
	if err := os.MkdirAll(filepath.Dir(persistStream), 0o755); err != nil {
		t.Fatal(err)
	}
	mustExit(t, 0, "migrate", "save", persistMdev, persistStream)
	if err := os.WriteFile(persistWant, want.marshal(), 0o644); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(persistStream)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("mtty %s defined; its state saved: %d bytes", persistMdev, fi.Size())
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
	// Each ExecStart in order, as systemd runs a oneshot's ("-": its
	// failure does not stop the next).
	for _, m := range regexp.MustCompile(`(?m)^ExecStart=(-?)(.*)$`).FindAllStringSubmatch(unit, -1) {
		out, err := exec.Command("/bin/sh", "-c", m[2]).CombinedOutput()
		if err != nil {
			t.Fatalf("ExecStart %q: %v\n%s", m[2], err, out)
		}
		t.Logf("ExecStart=%s:\n%s", m[2], out)
	}
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
	applyMdev(t, rule)
}

// applyMdev (second boot, after the unit ran): the defined mtty is back;
// the state saved in the first boot loads into it; removed, it comes back
// through the udev rule's mdev line; remove --persist forgets it.
func applyMdev(t *testing.T, rule string) {
	needMdev(t, "mtty")
	var defs []struct {
		UUID   string `json:"uuid"`
		Exists bool   `json:"exists"`
	}
	if err := json.Unmarshal([]byte(mustExit(t, 0, "mdev", "list", "--defined", "--json")), &defs); err != nil {
		t.Fatal(err)
	}
	if len(defs) != 1 || defs[0].UUID != persistMdev || !defs[0].Exists {
		t.Fatalf("after the unit, mdev list --defined: %+v; want %s, existing", defs, persistMdev)
	}
	mustExit(t, 0, "migrate", "load", persistMdev, persistStream)
	want := unmarshalUART(t, []byte(readFile(t, persistWant)))
	h, err := vfio.Open(persistMdev, &vfio.Options{Backend: vfio.Legacy})
	if err != nil {
		t.Fatal(err)
	}
	openUART(t, h).check("the mtty of the second boot, loaded with the first boot's state", want)
	h.Close()

	if err := mdev.Remove(persistMdev); err != nil {
		t.Fatal(err)
	}
	var run string
	for _, l := range strings.Split(rule, "\n") {
		if strings.Contains(l, `ENV{MDEV_STATE}=="registered"`) {
			run = field(t, l, `RUN\+="([^"]*)"`)
		}
	}
	if run == "" {
		t.Fatalf("the rule has no line for a registering mdev parent:\n%s", rule)
	}
	cmd := strings.ReplaceAll(run, "$kernel", "mtty")
	if out, err := exec.Command("/bin/sh", "-c", cmd).CombinedOutput(); err != nil || !strings.Contains(strings.Join(strings.Fields(string(out)), " "), persistMdev+" created") {
		t.Errorf("RUN %q: %v\n%s", cmd, err, out)
	}
	if _, err := mdev.Get(persistMdev); err != nil {
		t.Errorf("after the rule's mdev line: %v", err)
	}
	if out := mustExit(t, 0, "mdev", "remove", "--persist", persistMdev); !strings.Contains(out, "definition deleted") {
		t.Errorf("mdev remove --persist: %s", out)
	}
	if out := mustExit(t, 0, "mdev", "start"); strings.TrimSpace(out) != "" {
		t.Errorf("mdev start with nothing defined: %q", out)
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
