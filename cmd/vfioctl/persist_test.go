package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vfioctl/vfioctl/pci"
)

// TestBootHooksParse hands the boot hooks `persist install` writes to
// their real parsers: systemd-analyze verify must read the unit without a
// word of complaint, and udevadm test, with the rule as the only one in
// /etc/udev/rules.d (a private mount namespace), must run `vfioctl
// persist apply ADDR` for a PCI device that has a saved binding and not
// for one that has none.
func TestBootHooksParse(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: udevadm test runs in a private mount namespace")
	}
	for _, tool := range []string{"systemd-analyze", "udevadm", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (make deps installs systemd, udev and util-linux): %v", tool, err)
		}
	}
	bin, err := os.Executable() // an executable, as ExecStart's must be
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	unit := filepath.Join(dir, "vfioctl-persist.service")
	if err := os.WriteFile(unit, []byte(systemdUnit(bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", "--man=no", unit).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Errorf("systemd-analyze verify of the unit: %v\n%s", err, out)
	}

	devs, _ := filepath.Glob("/sys/bus/pci/devices/*")
	if len(devs) < 2 {
		t.Skipf("this host has %d PCI devices; the rule is tried on two", len(devs))
	}
	saved, other := filepath.Base(devs[0]), filepath.Base(devs[1])
	defer func(d string) { pci.PersistDir = d }(pci.PersistDir)
	pci.PersistDir = filepath.Join(dir, "persist")
	rules := filepath.Join(dir, "rules.d")
	for _, d := range []string{pci.PersistDir, rules} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(pci.PersistDir, saved+".json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rules, filepath.Base(udevRulePath)), []byte(udevRule(bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	udev := func(addr string) string {
		t.Helper()
		out, err := exec.Command("unshare", "-m", "sh", "-c",
			`mount --bind "$1" /etc/udev/rules.d && exec udevadm test --action=add "/sys/bus/pci/devices/$2"`, "sh", rules, addr).CombinedOutput()
		if err != nil {
			t.Fatalf("udevadm test %s: %v\n%s", addr, err, out)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, filepath.Base(udevRulePath)) && (strings.Contains(l, "nvalid") || strings.Contains(l, "rror") || strings.Contains(l, "nknown")) {
				t.Errorf("udev complains about the rule: %s", l)
			}
		}
		return string(out)
	}
	run := "run: '" + bin + " persist apply "
	if out := udev(saved); !strings.Contains(out, run+saved+"'") {
		t.Errorf("udev does not run %s persist apply %s for a device with a saved binding:\n%s", bin, saved, out)
	}
	if out := udev(other); strings.Contains(out, run) {
		t.Errorf("udev runs persist apply for %s, which has no saved binding:\n%s", other, out)
	}
}
