package guest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/tests/e2e/internal/pattern"
	"github.com/vfioctl/vfioctl/vfio"
)

// vfioctl runs the CLI in the guest and returns stdout+stderr and the exit code.
func vfioctl(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command("/bin/vfioctl", args...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("vfioctl %v: %v", args, err)
	}
	return string(out), 0
}

// must runs vfioctl and fails unless it exits with want.
func mustExit(t *testing.T, want int, args ...string) string {
	t.Helper()
	out, code := vfioctl(t, args...)
	if code != want {
		t.Fatalf("vfioctl %s: exit %d, want %d:\n%s", strings.Join(args, " "), code, want, out)
	}
	return out
}

func sysfsHex(t *testing.T, addr, file string) uint64 {
	v, err := strconv.ParseUint(sysfsRead(t, "/sys/bus/pci/devices/"+addr+"/"+file), 0, 32)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestCLIListMatchesSysfs compares `vfioctl list --json` with sysfs read
// directly, for every device, and checks edu, e1000e and nvme are there.
func TestCLIListMatchesSysfs(t *testing.T) {
	var devs []struct {
		Address    string `json:"address"`
		Vendor     string `json:"vendor"` // hex, as lspci -n writes it: "8086"
		Device     string `json:"device"`
		Class      string `json:"class"` // base class and subclass: "0200"
		ProgIf     string `json:"prog_if"`
		Driver     string `json:"driver"`
		IOMMUGroup int    `json:"iommu_group"`
	}
	if err := json.Unmarshal([]byte(mustExit(t, 0, "list", "--json")), &devs); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir("/sys/bus/pci/devices")
	if len(devs) != len(ents) {
		t.Fatalf("list shows %d devices, sysfs has %d", len(devs), len(ents))
	}
	seen := map[string]bool{}
	for _, d := range devs {
		for name, want := range wantDevices {
			if want == "0x"+d.Vendor+":0x"+d.Device {
				seen[name] = true
			}
		}
		// sysfs writes 0x8086, 0x10d3, 0x020000.
		if "0x"+d.Vendor != sysfsRead(t, "/sys/bus/pci/devices/"+d.Address+"/vendor") ||
			"0x"+d.Device != sysfsRead(t, "/sys/bus/pci/devices/"+d.Address+"/device") ||
			"0x"+d.Class+d.ProgIf != sysfsRead(t, "/sys/bus/pci/devices/"+d.Address+"/class") {
			t.Errorf("%s: list says %s:%s class %s prog-if %s, sysfs differs", d.Address, d.Vendor, d.Device, d.Class, d.ProgIf)
		}
		if d.Driver != sysfsDriver(d.Address) {
			t.Errorf("%s: list says driver %q, sysfs %q", d.Address, d.Driver, sysfsDriver(d.Address))
		}
		grp := -1
		if l, err := os.Readlink("/sys/bus/pci/devices/" + d.Address + "/iommu_group"); err == nil {
			grp, _ = strconv.Atoi(filepath.Base(l))
		}
		if d.IOMMUGroup != grp {
			t.Errorf("%s: list says group %d, sysfs %d", d.Address, d.IOMMUGroup, grp)
		}
	}
	for name := range wantDevices {
		if !seen[name] && (name == "edu" || !EdusOnly) {
			t.Errorf("list lacks %s", name)
		}
	}
	if !EdusOnly {
		text := mustExit(t, 0, "list", "--class", "net")
		if !strings.Contains(text, findDevice(t, wantDevices["e1000e"])) || strings.Contains(text, findDevice(t, wantDevices["nvme"])) {
			t.Errorf("list --class net:\n%s", text)
		}
	}
	var groups []struct {
		ID      int      `json:"id"`
		Devices []string `json:"devices"`
		Viable  bool     `json:"viable"`
	}
	if err := json.Unmarshal([]byte(mustExit(t, 0, "groups", "--json")), &groups); err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		viable := true
		for _, d := range g.Devices {
			drv := sysfsDriver(d)
			class := sysfsHex(t, d, "class")
			if drv != "" && drv != "vfio-pci" && drv != "pci-stub" && class>>8 != 0x0604 {
				viable = false
			}
		}
		if g.Viable != viable {
			t.Errorf("group %d %v: groups says viable=%v, its drivers say %v", g.ID, g.Devices, g.Viable, viable)
		}
	}
}

// TestCLIEduSession binds edu, runs dma-test through every backend, and
// gives it back.
func TestCLIEduSession(t *testing.T) {
	addr := findDevice(t, wantDevices["edu"])
	if sysfsDriver(addr) == "vfio-pci" {
		mustExit(t, 0, "unbind", addr)
	}
	before := sysfsDriver(addr)
	out := mustExit(t, 0, "bind", addr)
	if !strings.Contains(out, "/dev/vfio/") {
		t.Errorf("bind output lacks the group node:\n%s", out)
	}
	mustExit(t, 6, "bind", addr) // double bind
	for _, b := range []string{"auto", "cdev", "group-iommufd", "iommufd-compat", "legacy"} {
		var rep struct {
			Backend   string `json:"backend"`
			Roundtrip string `json:"roundtrip"`
			IOVA      uint64 `json:"iova"`
		}
		if bk, _ := vfio.ParseBackend(b); bk != vfio.Auto && !backendSupported(t, bk) { // auto: the best the boot offers
			if out := mustExit(t, 4, "dma-test", "--backend", b, addr); !strings.Contains(out, unsupportedSays(bk)) {
				t.Errorf("dma-test --backend %s on a kernel without it: %s", b, out)
			}
			continue
		}
		if err := json.Unmarshal([]byte(mustExit(t, 0, "dma-test", "--backend", b, "--json", addr)), &rep); err != nil {
			t.Fatal(err)
		}
		if rep.Roundtrip != "ok" || (b != "auto" && rep.Backend != b) {
			t.Errorf("dma-test --backend %s: %+v", b, rep)
		}
	}
	info := mustExit(t, 0, "info", addr)
	for _, want := range []string{"BAR0", "0x100000", "config", "MSI", "INTx"} {
		if !strings.Contains(info, want) {
			t.Errorf("info lacks %q:\n%s", want, info)
		}
	}
	mustExit(t, 0, "unbind", addr)
	if now := sysfsDriver(addr); now != before {
		t.Errorf("after unbind the driver is %q, was %q", now, before)
	}
	mustExit(t, 6, "unbind", addr) // not bound
}

func TestCLIBadInput(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"bind", "../../../etc/passwd"}, 2, "invalid address"},
		{[]string{"bind", "0000:00:03.0/../../x"}, 2, "invalid address"},
		{[]string{"bind", "0000:00:20.0"}, 2, "slot"},
		{[]string{"info", "zz"}, 2, "invalid address"},
		{[]string{"bind", "0000:00:1e.7"}, 2, "no such PCI device"},
		{[]string{"bind"}, 2, "needs one PCI address"},
		{[]string{"restore", findDevice(t, wantDevices["nvme"])}, 6, "no record"},
		{[]string{"list", "--class", "toaster"}, 2, "unknown class"},
		{[]string{"dma-test", "--backend", "magic", findDevice(t, wantDevices["edu"])}, 2, "unknown backend"},
	} {
		out, code := vfioctl(t, c.args...)
		if code != c.code || !strings.Contains(out, c.says) {
			t.Errorf("vfioctl %s: exit %d %q, want exit %d saying %q", strings.Join(c.args, " "), code, out, c.code, c.says)
		}
	}
}

// TestCLINICSafety: an e1000e that is up with an address is refused; --force
// takes it; restore gives it back to e1000e and the netdev reappears.
func TestCLINICSafety(t *testing.T) {
	addr := findDevice(t, wantDevices["e1000e"])
	ifaces, err := os.ReadDir("/sys/bus/pci/devices/" + addr + "/net")
	if err != nil || len(ifaces) != 1 {
		t.Fatalf("e1000e netdev: %v %v", ifaces, err)
	}
	name := ifaces[0].Name()
	link, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	addr4 := &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(192, 0, 2, 1), Mask: net.CIDRMask(24, 32)}}
	if err := netlink.AddrAdd(link, addr4); err != nil {
		t.Fatal(err)
	}
	out := mustExit(t, 3, "bind", addr)
	if !strings.Contains(out, name) || !strings.Contains(out, "192.0.2.1/24") {
		t.Errorf("refusal does not name %s and its address:\n%s", name, out)
	}
	if sysfsDriver(addr) != "e1000e" {
		t.Fatalf("a refused bind changed the driver to %q", sysfsDriver(addr))
	}
	mustExit(t, 0, "bind", "--force", addr)
	if _, err := netlink.LinkByName(name); err == nil {
		t.Errorf("%s still exists after the NIC was bound to vfio-pci", name)
	}
	mustExit(t, 0, "restore", addr)
	if sysfsDriver(addr) != "e1000e" {
		t.Fatalf("restore left driver %q, want e1000e", sysfsDriver(addr))
	}
	waitFor(t, "the e1000e netdev", func() bool {
		ents, _ := os.ReadDir("/sys/bus/pci/devices/" + addr + "/net")
		return len(ents) == 1
	})
}

// TestCLIDiskSafety: an NVMe namespace that is mounted is refused; after
// unmounting, bind works and restore gives the disk back.
func TestCLIDiskSafety(t *testing.T) {
	// The SR-IOV nvme's disk: the other one holds the host's pattern,
	// which the image check after the boot verifies.
	addr := sriovPF(t)
	var disk string
	waitFor(t, "the nvme namespace", func() bool {
		m, _ := filepath.Glob("/sys/bus/pci/devices/" + addr + "/nvme/nvme*/nvme*n1")
		if len(m) > 0 {
			disk = filepath.Base(m[0])
		}
		return disk != ""
	})
	if out, err := exec.Command("/bin/mke2fs", "-q", "/dev/"+disk).CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v %s", err, out)
	}
	if err := os.MkdirAll("/mnt/nvme", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("/dev/"+disk, "/mnt/nvme", "ext2", 0, ""); err != nil {
		t.Fatal(err)
	}
	out := mustExit(t, 3, "bind", addr)
	if !strings.Contains(out, "/dev/"+disk) || !strings.Contains(out, "/mnt/nvme") {
		t.Errorf("refusal does not name the mounted disk:\n%s", out)
	}
	if err := unix.Unmount("/mnt/nvme", 0); err != nil {
		t.Fatal(err)
	}
	mustExit(t, 0, "bind", addr)
	mustExit(t, 0, "restore", addr)
	if sysfsDriver(addr) != "nvme" {
		t.Fatalf("restore left driver %q, want nvme", sysfsDriver(addr))
	}
	waitFor(t, "the namespace to come back", func() bool {
		_, err := os.Stat("/dev/" + disk)
		return err == nil
	})
}

// TestCLIUnbindBusy: while a process holds the group node, unbind refuses
// with exit 5 and names the process instead of hanging.
func TestCLIUnbindBusy(t *testing.T) {
	addr := eduAddr(t)
	grp := filepath.Base(must(os.Readlink("/sys/bus/pci/devices/" + addr + "/iommu_group")))
	f, err := os.OpenFile("/dev/vfio/"+grp, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := mustExit(t, 5, "unbind", addr)
	f.Close()
	if !strings.Contains(out, "pid "+strconv.Itoa(os.Getpid())) || !strings.Contains(out, "/dev/vfio/"+grp) {
		t.Errorf("busy refusal does not name this process and the node:\n%s", out)
	}
	mustExit(t, 0, "unbind", addr)
}

// TestCLIBindGroup: the ICH9 functions share a group under intel-iommu;
// bind --group takes all three (ahci has no disk attached, so nothing is in
// use), and restore gives the SATA controller back to ahci.
func TestCLIBindGroup(t *testing.T) {
	requireICH9Group(t)
	out := mustExit(t, 0, "bind", "--group", "--json", "0000:00:1f.0")
	var bound []struct {
		Address  string `json:"address"`
		Previous string `json:"previous_driver"`
	}
	if err := json.Unmarshal([]byte(out), &bound); err != nil {
		t.Fatal(err)
	}
	if len(bound) != 3 {
		t.Fatalf("bind --group bound %+v, want the three ICH9 functions", bound)
	}
	for _, b := range bound {
		if sysfsDriver(b.Address) != "vfio-pci" {
			t.Errorf("%s: driver %q after bind --group", b.Address, sysfsDriver(b.Address))
		}
		if b.Previous != "" {
			mustExit(t, 0, "restore", b.Address)
		} else {
			mustExit(t, 0, "unbind", b.Address)
		}
	}
	if sysfsDriver("0000:00:1f.2") != "ahci" {
		t.Errorf("00:1f.2 driver %q after restore, want ahci", sysfsDriver("0000:00:1f.2"))
	}
}

// TestCLIUnprivilegedRead: list, groups and doctor work as an unprivileged
// user (sysfs is world-readable, and so is /dev/vfio/vfio, so doctor's
// compat probe gives the same answer as for root).
func TestCLIUnprivilegedRead(t *testing.T) {
	for _, args := range [][]string{{"list", "--json"}, {"groups"}, {"doctor"}} {
		cmd := exec.Command("/bin/vfioctl", args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("vfioctl %v as nobody: %v\n%s", args, err, out)
		}
		if args[0] == "doctor" {
			compat := func(out string) string {
				for _, l := range strings.Split(out, "\n") {
					if strings.HasPrefix(l, "/dev/vfio/vfio served by iommufd") {
						return l
					}
				}
				return ""
			}
			root, _ := vfioctl(t, "doctor")
			if c := compat(string(out)); c == "" || c != compat(root) {
				t.Errorf("doctor's compat probe as nobody %q, as root %q", c, compat(root))
			}
		}
	}
}

// TestCLINVMe: vfioctl nvme identifies the controller, reads the host's
// blocks to stdout, writes a file to the scratch area and reads it back,
// benchmarks briefly as JSON, and refuses bad input with exit 2.
func TestCLINVMe(t *testing.T) {
	addr := findDevice(t, wantDevices["nvme"])
	vfioDevice(t, addr)
	var id struct {
		Controller struct {
			Serial string `json:"serial"`
			Model  string `json:"model"`
		} `json:"controller"`
		Namespace struct {
			Blocks    uint64 `json:"blocks"`
			BlockSize int    `json:"block_size"`
		} `json:"namespace"`
	}
	if err := json.Unmarshal([]byte(mustExit(t, 0, "nvme", "identify", addr, "--json")), &id); err != nil {
		t.Fatal(err)
	}
	if id.Controller.Serial != "vfioctl0" || id.Namespace.Blocks != pattern.Blocks || id.Namespace.BlockSize != pattern.BlockSize {
		t.Errorf("identify: %+v", id)
	}
	cmd := exec.Command("/bin/vfioctl", "nvme", "read", addr, "--lba", "100", "--blocks", "16")
	got, err := cmd.Output()
	if err != nil {
		t.Fatalf("nvme read: %v", err)
	}
	if len(got) != 16*pattern.BlockSize || pattern.Mismatch(got, 100, pattern.Host) >= 0 {
		t.Errorf("nvme read of blocks 100-115: %d bytes, not the host's", len(got))
	}

	dir := t.TempDir()
	in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out")
	data := make([]byte, 8192)
	for i := range data {
		data[i] = byte(i * 13)
	}
	if err := os.WriteFile(in, data, 0o644); err != nil {
		t.Fatal(err)
	}
	lba := fmt.Sprint(pattern.ScratchStart + 4096)
	mustExit(t, 0, "nvme", "write", addr, "--lba", lba, "--input", in)
	mustExit(t, 0, "nvme", "read", addr, "--lba", lba, "--blocks", "16", "--output", out)
	if back, err := os.ReadFile(out); err != nil || !bytes.Equal(back, data) {
		t.Errorf("the file read back differs (%v)", err)
	}

	// Two queues on two pinned threads, 30 % writes: each write puts back
	// what its buffer just read, which the host's check of the image after
	// the boot proves (a write of anything else anywhere fails it).
	type benchOut struct {
		IOs    uint64  `json:"ios"`
		Writes uint64  `json:"writes"`
		IOPS   float64 `json:"iops"`
		P50    int64   `json:"p50_ns"`
		P99    int64   `json:"p99_ns"`
		Max    int64   `json:"max_ns"`
		Shadow *bool   `json:"shadow_doorbells"`
	}
	var res benchOut
	if err := json.Unmarshal([]byte(mustExit(t, 0, "nvme", "bench", addr, "--time", "1s", "--warmup", "200ms", "--depth", "4", "--queues", "2", "--cpu", "0,1", "--write-percent", "30", "--json")), &res); err != nil {
		t.Fatal(err)
	}
	if res.IOs < 100 || res.IOPS <= 0 || res.P50 <= 0 || res.P99 < res.P50 || res.Max < res.P99 {
		t.Errorf("bench: %+v", res)
	}
	if share := float64(res.Writes) / float64(res.IOs); share < 0.2 || share > 0.4 {
		t.Errorf("bench: %d writes of %d commands, want about 30 %%", res.Writes, res.IOs)
	}
	// QEMU's nvme offers shadow doorbells: --shadow-doorbells auto uses
	// them from depth 2 on (above: depth 4), not at depth 1, and on or
	// off says so at any depth.
	show := func(b *bool) string {
		if b == nil {
			return "missing"
		}
		return fmt.Sprint(*b)
	}
	if res.Shadow == nil || !*res.Shadow {
		t.Errorf("bench at depth 4, --shadow-doorbells auto: shadow_doorbells %s, want true", show(res.Shadow))
	}
	for _, c := range []struct {
		flag string
		want bool
	}{{"auto", false}, {"on", true}, {"off", false}} {
		res = benchOut{}
		if err := json.Unmarshal([]byte(mustExit(t, 0, "nvme", "bench", addr, "--time", "300ms", "--warmup", "0s", "--shadow-doorbells", c.flag, "--json")), &res); err != nil {
			t.Fatal(err)
		}
		if res.IOs == 0 || res.Shadow == nil || *res.Shadow != c.want {
			t.Errorf("bench at depth 1, --shadow-doorbells %s: %d I/Os, shadow_doorbells %s, want %v", c.flag, res.IOs, show(res.Shadow), c.want)
		}
	}
	mustExit(t, 2, "nvme", "bench", addr, "--shadow-doorbells", "maybe")
	// Hybrid completion: spin 50 µs, then sleep on the vector.
	res = benchOut{}
	if err := json.Unmarshal([]byte(mustExit(t, 0, "nvme", "bench", addr, "--time", "500ms", "--warmup", "0s", "--interrupts", "--poll-before-sleep", "50us", "--json")), &res); err != nil {
		t.Fatal(err)
	}
	if res.IOs == 0 || res.Writes != 0 {
		t.Errorf("hybrid bench: %+v", res)
	}
	mustExit(t, 2, "nvme", "bench", addr, "--poll-before-sleep", "50us")
	mustExit(t, 2, "nvme", "bench", addr, "--write-percent", "60")

	// A bench holds the controller: a second vfioctl on it is exit 5,
	// naming the holder. The bench's progress comes in whole lines.
	bench := exec.Command("/bin/vfioctl", "nvme", "bench", addr, "--time", "3s")
	progress, err := bench.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := bench.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewReader(progress)
	first, err := lines.ReadString('\n') // a second into the bench: it has the controller
	if err != nil {
		t.Fatalf("the bench's first progress line: %q, %v", first, err)
	}
	busy, code := vfioctl(t, "nvme", "identify", addr)
	rest, _ := io.ReadAll(lines)
	if err := bench.Wait(); err != nil {
		t.Fatalf("the bench: %v\n%s%s", err, first, rest)
	}
	if code != 5 || !strings.Contains(busy, fmt.Sprintf("pid %d (vfioctl)", bench.Process.Pid)) {
		t.Errorf("vfioctl nvme identify while a bench (pid %d) holds the controller: exit %d, want 5 naming it:\n%s", bench.Process.Pid, code, busy)
	}
	if p := first + string(rest); strings.Contains(p, "\r") || !strings.HasSuffix(first, "IOPS\n") || !strings.HasSuffix(p, "\n") {
		t.Errorf("bench progress to a pipe is not whole lines: %q", p)
	}

	// Block numbers whose byte offsets pass 2^64 are refused, and nothing
	// is written where a wrapped offset would land (block 27776).
	wrap := uint64(1)<<55 + 27776
	mustExit(t, 2, "nvme", "write", addr, "--lba", fmt.Sprint(wrap), "--input", in)
	if got, err := exec.Command("/bin/vfioctl", "nvme", "read", addr, "--lba", "27776", "--blocks", "16").Output(); err != nil || len(got) != 16*pattern.BlockSize || pattern.Mismatch(got, 27776, pattern.Host) >= 0 {
		t.Errorf("blocks 27776-27791 are not the host's after a write at block 2^55+27776 was refused (%v)", err)
	}

	short := filepath.Join(dir, "short")
	os.WriteFile(short, make([]byte, 100), 0o644)
	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"nvme", "read", addr, "--lba", fmt.Sprint(pattern.Blocks), "--blocks", "1"}, "past the end"},
		{[]string{"nvme", "read", addr, "--lba", fmt.Sprint(uint64(1) << 55), "--blocks", "1"}, "past the end"},
		{[]string{"nvme", "read", addr, "--lba", "0", "--blocks", fmt.Sprint(uint64(1) << 55)}, "past the end"},
		{[]string{"nvme", "write", addr, "--lba", fmt.Sprint(wrap), "--input", in}, "past the end"},
		{[]string{"nvme", "write", addr, "--lba", lba, "--input", short}, "whole"},
		{[]string{"nvme", "identify", addr, "--nsid", "2"}, "namespace 2"},
		{[]string{"nvme", "identify", eduAddr(t)}, "not an NVMe controller"},
		{[]string{"nvme", "bench", addr, "--depth", "0"}, "positive"},
	} {
		out, code := vfioctl(t, c.args...)
		if code != 2 || !strings.Contains(out, c.says) {
			t.Errorf("vfioctl %s: exit %d, want 2 saying %q:\n%s", strings.Join(c.args, " "), code, c.says, out)
		}
	}
}
