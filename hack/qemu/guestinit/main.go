// Command guestinit is PID 1 of the e2e guest. It mounts the pseudo
// filesystems, runs every command of /vfioctl/manifest.json in turn with its
// output framed on the results port (/dev/ttyS1), and powers the VM off.
// The host (package qemu) reads the frames; the kernel console stays on
// ttyS0 so its messages never mix with test output.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/hack/qemu/frame"
)

func main() {
	out := setup()
	defer powerOff()
	var u unix.Utsname
	_ = unix.Uname(&u)
	fmt.Fprintf(out, "%s %s %s\n", frame.Kernel, unix.ByteSliceToString(u.Release[:]), unix.ByteSliceToString(u.Version[:]))
	loadModules()
	var m frame.Manifest
	b, err := os.ReadFile(frame.ManifestPath)
	if err == nil {
		err = json.Unmarshal(b, &m)
	}
	if err != nil {
		fmt.Fprintf(out, "%s guestinit: manifest: %v\n", frame.Fatal, err)
		return
	}
	for _, c := range m.Commands {
		fmt.Fprintf(out, "%s %s\n", frame.Begin, c.Name)
		code := run(c, out, m.Env)
		fmt.Fprintf(out, "%s %s %d\n", frame.End, c.Name, code)
	}
	fmt.Fprintln(out, frame.Done)
}

// loadModules loads every module of frame.ModulesDir (finit_module, as
// insmod does). One that fails is said on the console: the tests that
// need it fail, finding the boot's manifest promises what is not there.
func loadModules() {
	kos, _ := filepath.Glob(frame.ModulesDir + "/*.ko")
	for _, ko := range kos {
		f, err := os.Open(ko)
		if err == nil {
			err = unix.FinitModule(int(f.Fd()), "", 0)
			f.Close()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "guestinit: loading %s: %v\n", ko, err)
		}
	}
}

// powerOff stops the PCI drivers, then powers the VM off. Under
// virtio-iommu the kernel shuts the IOMMU (a virtio device, registered after
// the PCI devices) down first; nvme's shutdown commands then wait out the
// 60 s admin timeout. So the endpoints are unbound first, deepest first,
// while the IOMMU (virtio-pci) and the PCIe ports above them (pcieport,
// whose removal turns off bus mastering on the bridge, and with it every
// DMA and MSI from below) stay: power-off is then immediate everywhere.
func powerOff() {
	unix.Sync()
	devs, _ := filepath.Glob("/sys/bus/pci/devices/*")
	type dev struct {
		addr  string
		depth int
	}
	var eps []dev
	for _, d := range devs {
		drv, err := os.Readlink(d + "/driver")
		if err != nil || filepath.Base(drv) == "virtio-pci" || filepath.Base(drv) == "pcieport" {
			continue
		}
		real, _ := filepath.EvalSymlinks(d)
		eps = append(eps, dev{filepath.Base(d), strings.Count(real, "/")})
	}
	sort.SliceStable(eps, func(i, j int) bool { return eps[i].depth > eps[j].depth })
	for _, e := range eps {
		_ = os.WriteFile("/sys/bus/pci/devices/"+e.addr+"/driver/unbind", []byte(e.addr), 0)
	}
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

func run(c frame.Command, out io.Writer, env []string) int {
	cmd := exec.Command(c.Argv[0], c.Argv[1:]...)
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(append([]string{"PATH=/bin:/sbin:/usr/bin", "HOME=/root", "TMPDIR=/tmp", frame.GuestEnv + "=1"}, env...), c.Env...)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(out, "guestinit: %v\n", err)
		return 127
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var timeout <-chan time.Time
	if c.Timeout > 0 {
		timeout = time.After(c.Timeout)
	}
	select {
	case err := <-done:
		if err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				return ee.ExitCode()
			}
			return 126
		}
		return 0
	case <-timeout:
		_ = cmd.Process.Signal(unix.SIGQUIT) // Go programs dump their goroutines
		time.Sleep(2 * time.Second)
		_ = cmd.Process.Kill()
		<-done
		fmt.Fprintf(out, "guestinit: %s timed out after %s\n", c.Name, c.Timeout)
		return 124
	}
}

// setup mounts what tests need and opens the results port in raw mode.
func setup() io.Writer {
	for _, m := range []struct{ src, dst, fs string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
		{"tmpfs", "/tmp", "tmpfs"},
		{"tmpfs", "/run", "tmpfs"},
		{"hugetlbfs", "/dev/hugepages", "hugetlbfs"},
	} {
		_ = os.MkdirAll(m.dst, 0o755)
		if err := unix.Mount(m.src, m.dst, m.fs, 0, ""); err != nil && err != unix.EBUSY {
			fmt.Fprintf(os.Stderr, "guestinit: mount %s: %v\n", m.dst, err)
		}
	}
	port := frame.Port
	if b, err := os.ReadFile("/proc/cmdline"); err == nil {
		for _, f := range strings.Fields(string(b)) {
			if v, ok := strings.CutPrefix(f, frame.PortParam+"="); ok {
				port = v
			}
		}
	}
	f, err := os.OpenFile(port, os.O_WRONLY|unix.O_NOCTTY, 0)
	if err != nil {
		fmt.Fprintf(os.Stderr, "guestinit: %s: %v\n", port, err)
		return os.Stderr
	}
	if t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
		t.Oflag &^= unix.OPOST // no \n -> \r\n
		_ = unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, t)
	}
	return f
}
