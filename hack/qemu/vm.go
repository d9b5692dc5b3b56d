package qemu

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vfioctl/vfioctl/hack/qemu/frame"
)

// Profile is a VM shape: a vIOMMU and the kernel parameters it needs. Every
// profile carries the same devices: edu, e1000e, nvme.
type Profile struct {
	Name    string
	IOMMU   []string // QEMU arguments placing the vIOMMU (before the devices)
	Machine string
	Cmdline string
	// EduOptions are appended to each edu's -device options.
	EduOptions string
	// NVMeOnRootBus keeps the nvme controllers on the root bus: measured
	// with QEMU 7.2, an nvme behind a PCIe root port under amd-iommu never
	// finishes its probe and the guest never reaches init.
	NVMeOnRootBus bool
	// Arch is the guest's GOARCH ("" is amd64); see Archs.
	Arch string
	// Devices are the QEMU arguments of the guest's devices (nil: the x86
	// Topology).
	Devices []string
}

// Arch is how QEMU runs a guest architecture.
type Arch struct {
	QEMU    string   // the system emulator
	Package string   // the Debian package that has it
	Console string   // the kernel's console device
	Port    string   // the results port in the guest ("" : frame.Port)
	Results []string // QEMU arguments giving the results port the "res" chardev
	CPU     string   // for TCG
}

// Archs are the guest architectures. Foreign ones always run under TCG.
var Archs = map[string]Arch{
	"amd64": {QEMU: "qemu-system-x86_64", Package: "qemu-system-x86", Console: "ttyS0",
		Results: []string{"-serial", "chardev:res"}},
	// QEMU virt has one PL011: the results go through a virtio console.
	"arm64": {QEMU: "qemu-system-aarch64", Package: "qemu-system-arm", Console: "ttyAMA0", Port: "/dev/hvc0",
		Results: []string{"-device", "virtio-serial-pci", "-device", "virtconsole,chardev=res"}, CPU: "max"},
	// pSeries: -serial is the first hypervisor virtual terminal (hvc0);
	// the results go through a second one (hvc1).
	"ppc64le": {QEMU: "qemu-system-ppc64", Package: "qemu-system-ppc", Console: "hvc0", Port: "/dev/hvc1",
		Results: []string{"-device", "spapr-vty,chardev=res"}, CPU: "power9"},
}

func (p Profile) arch() string {
	if p.Arch == "" {
		return "amd64"
	}
	return p.Arch
}

// eduFullMask lets edu address all 64 bits (its default mask is 28): the
// isolation test aims a DMA at an IOVA equal to a RAM page's physical
// address, wherever the page lies, to show that an IOMMU letting it
// through untranslated would have reached that page. The tests' own
// mappings stay below 28 bits.
const eduFullMask = ",dma_mask=0xffffffffffffffff"

// Profiles are the vIOMMUs the e2e suite runs under.
var Profiles = map[string]Profile{
	"intel": {
		Name:       "intel",
		Machine:    "q35,kernel-irqchip=split",
		IOMMU:      []string{"-device", "intel-iommu,intremap=on"},
		Cmdline:    "intel_iommu=on",
		EduOptions: eduFullMask,
	},
	"amd": {
		Name:          "amd",
		Machine:       "q35,kernel-irqchip=split",
		IOMMU:         []string{"-device", "amd-iommu,intremap=on"},
		NVMeOnRootBus: true,
		EduOptions:    eduFullMask,
	},
	"virtio": {
		Name:    "virtio",
		Machine: "q35",
		IOMMU:   []string{"-device", "virtio-iommu-pci"},
		// virtio-iommu has no interrupt remapping: VFIO refuses it unless told.
		Cmdline:    "vfio_iommu_type1.allow_unsafe_interrupts=1 iommufd.allow_unsafe_interrupts=1",
		EduOptions: eduFullMask,
	},
	// arm64 (QEMU virt, GICv3 with its ITS for MSIs) with an SMMUv3. The
	// edus are its only devices.
	"smmuv3": {
		Name:    "smmuv3",
		Arch:    "arm64",
		Machine: "virt,iommu=smmuv3,gic-version=3",
		Devices: []string{"-device", "edu,addr=0x3" + eduFullMask, "-device", "edu,addr=0x6" + eduFullMask},
	},
	// ppc64le pSeries (POWER9) and its SPAPR TCE IOMMU: each edu on a PCI
	// host bridge of its own, so each is alone in its group (on the
	// default bridge edu shares group 0 with pseries' VGA and USB). The
	// full DMA mask lets edu reach a dynamic window, which the kernel
	// places at 2^59. The cap-* options turn off Spectre mitigations TCG
	// does not emulate; VOF (instead of SLOF firmware) boots in seconds.
	"pseries": {
		Name:    "pseries",
		Arch:    "ppc64le",
		Machine: "pseries,cap-cfpc=broken,cap-sbbc=broken,cap-ibs=broken,cap-ccf-assist=off,x-vof=on",
		Devices: []string{
			"-device", "spapr-pci-host-bridge,index=1", "-device", "edu,bus=pci.1,addr=0x1,dma_mask=0xffffffffffffffff",
			"-device", "spapr-pci-host-bridge,index=2", "-device", "edu,bus=pci.2,addr=0x1,dma_mask=0xffffffffffffffff",
		},
	},
	// No vIOMMU at all, and VFIO's unsafe no-IOMMU mode on: devices DMA to
	// physical addresses, so edu may address all of memory (its default
	// mask is 28 bits, and user pages come from the top of the guest's).
	"noiommu": {
		Name:       "noiommu",
		Machine:    "q35",
		Cmdline:    "vfio.enable_unsafe_noiommu_mode=1",
		EduOptions: eduFullMask,
	},
}

// ProfileNames lists the vIOMMU profiles every guest test runs under, in a
// stable order (noiommu has a boot of its own).
var ProfileNames = []string{"intel", "amd", "virtio"}

// KernelVariants are the guest kernels hack/qemu/kernel.sh builds: Linux
// 6.12 with the type1 container, 6.12 with /dev/vfio/vfio served by
// iommufd, and Linux 6.1, before iommufd (6.2) and the device cdev (6.6).
var KernelVariants = []string{"legacy", "compat", "linux61"}

// MockKernel is the variant with CONFIG_IOMMUFD_TEST: 6.12 plus iommufd's
// mock IOMMU, for the features no emulated IOMMU offers.
const MockKernel = "iommufdtest"

// Spec describes one boot.
type Spec struct {
	Kernel  string // variant: one of KernelVariants or MockKernel
	Profile string
	// Packages are Go packages (as `go test` names them, e.g. "./tests/e2e")
	// whose test binaries run in the guest, one after the other.
	Packages []string
	// TestArgs are added to every test binary's command line (e.g. -test.run).
	TestArgs []string
	// Files are extra host files copied into the guest: guest path -> host path.
	Files map[string]string
	// Builds are Go commands built (static) into the guest: guest path ->
	// package, e.g. "bin/vfioctl": "./cmd/vfioctl".
	Builds map[string]string
	// Env is added to every guest command's environment, after
	// VFIOCTL_KERNEL and VFIOCTL_PROFILE, which name this boot, and the
	// backends it must offer (OfferEnv).
	Env []string
	// Commands run after the test binaries (e.g. a demo script).
	Commands []frame.Command
	// Cmdline is appended to the kernel command line (e.g. to drop a
	// profile's parameter on purpose).
	Cmdline string
	// QEMUArgs are appended to QEMU's command line (e.g. "-S" to start
	// with the vCPUs stopped, as a broken accelerator leaves them).
	QEMUArgs []string
	// OmitProfileCmdline leaves out the profile's own kernel parameters.
	OmitProfileCmdline bool
	// Timeout bounds the guest's run, counted from the moment its init
	// first speaks (so a slow boot on a busy machine does not eat into
	// it); a guest still running then is killed and reported as failed.
	// Before init speaks, NoProgressTimeout applies. Default 5 minutes.
	Timeout time.Duration
	// Stream receives the results port as it arrives (nil: not streamed).
	Stream io.Writer
	// NoCheckptr builds the guest's test binaries without -d=checkptr: a
	// benchmark measures the code users build, not its instrumented
	// twin (checkptr checks every unsafe.Pointer conversion, several per
	// NVMe command).
	NoCheckptr bool
	// NVMeImage is the backing file of the nvme (02:00.0; 00:05.0 under
	// amd), which the caller creates and may check after the boot; empty:
	// a zeroed 64 MiB file of the boot's own.
	NVMeImage string
}

// Result is what one boot produced.
type Result struct {
	Commands   []CommandResult
	Done       bool   // the guest ran every command and said so
	ConsoleLog string // path of the saved serial console (kernel log)
	Elapsed    time.Duration
	// Kernel is the guest kernel's release and version as its init
	// reported them (uname -r, uname -v); empty if init never spoke.
	Kernel string
	Err    error // the VM failed: timeout, QEMU error, missing frames
}

// CommandResult is the framed output of one guest command.
type CommandResult struct {
	Name     string
	Output   string
	ExitCode int
}

// RepoRoot finds the module root from the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "hack", "qemu", "kernel.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("qemu: not inside the vfioctl repository")
		}
		dir = parent
	}
}

// Kernel returns the path of the bzImage of a variant, building it (or
// reusing the cache) with hack/qemu/kernel.sh.
func Kernel(variant string) (string, error) {
	if p := os.Getenv("VFIOCTL_KERNEL_" + strings.ToUpper(variant)); p != "" {
		return p, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(filepath.Join(root, "hack", "qemu", "kernel.sh"), variant)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("kernel.sh %s: %w", variant, err)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 || f[0] != variant {
		return "", fmt.Errorf("kernel.sh %s: unexpected output %q", variant, out)
	}
	return f[1], nil
}

// ArtifactDir is where console logs of failed boots are kept, each
// named KERNEL-PROFILE-N.console.log (Result.ConsoleLog).
func ArtifactDir() string {
	if d := os.Getenv("VFIOCTL_ARTIFACTS"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "vfioctl-artifacts")
}

// Boot builds the guest root for spec, boots it and collects the results.
func Boot(ctx context.Context, spec Spec) (*Result, error) {
	prof, ok := Profiles[spec.Profile]
	if !ok {
		return nil, fmt.Errorf("qemu: unknown profile %q (have %s)", spec.Profile, strings.Join(ProfileNames, ", "))
	}
	if spec.Timeout == 0 {
		spec.Timeout = 5 * time.Minute
	}
	kernel, err := Kernel(spec.Kernel)
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "vfioctl-vm")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	cfg, err := KernelConfig(kernel)
	if err != nil {
		return nil, err
	}
	manifest := append([]string{OfferEnv + "=" + strings.Join(Offers(cfg, prof, spec.OmitProfileCmdline), ",")}, Features(cfg)...)
	initrd := filepath.Join(work, "initrd.cpio")
	if err := buildInitramfs(spec, kernel, manifest, work, initrd); err != nil {
		return nil, err
	}
	nvme := spec.NVMeImage
	if nvme == "" {
		nvme = filepath.Join(work, "nvme.img")
		if err := os.WriteFile(nvme, nil, 0o644); err != nil {
			return nil, err
		}
		if err := os.Truncate(nvme, 64<<20); err != nil {
			return nil, err
		}
	}
	sriov := filepath.Join(work, "nvme-sriov.img")
	if err := os.WriteFile(sriov, nil, 0o644); err != nil {
		return nil, err
	}
	if err := os.Truncate(sriov, 16<<20); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(ArtifactDir(), 0o755); err != nil {
		return nil, err
	}
	// A name of its own: boots of one kernel and profile may run at once
	// (parallel subtests, or two test runs on one machine).
	f, err := os.CreateTemp(ArtifactDir(), fmt.Sprintf("%s-%s-*.console.log", spec.Kernel, spec.Profile))
	if err != nil {
		return nil, err
	}
	console := f.Name()
	f.Close()

	// loglevel 4 keeps IOMMU fault storms off the slow serial console;
	// tests read every message from /dev/kmsg regardless.
	loglevel := "4"
	if l := os.Getenv("VFIOCTL_LOGLEVEL"); l != "" {
		loglevel = l
	}
	// vfio_pci.enable_sriov: a PF on vfio-pci may enable its VFs.
	arch := Archs[prof.arch()]
	cmdline := "console=" + arch.Console + " panic=-1 oops=panic vfio_pci.enable_sriov=1 loglevel=" + loglevel
	if arch.Port != "" {
		cmdline += " " + frame.PortParam + "=" + arch.Port
	}
	if !spec.OmitProfileCmdline && prof.Cmdline != "" {
		cmdline += " " + prof.Cmdline
	}
	if spec.Cmdline != "" {
		cmdline += " " + spec.Cmdline
	}
	accel, cpu := "tcg", arch.CPU
	if prof.arch() == "amd64" {
		accel, cpu = Accel(kernel)
	}
	args := []string{
		"-machine", prof.Machine, "-accel", accel, "-cpu", cpu, "-smp", "2", "-m", "1G",
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot", "-nic", "none",
		"-chardev", "file,id=con,path=" + console, "-serial", "chardev:con",
		"-chardev", "stdio,id=res,signal=off",
	}
	args = append(args, arch.Results...)
	args = append(args, prof.IOMMU...) // before the devices it translates
	if prof.Devices != nil {
		args = append(args, prof.Devices...)
	} else {
		args = append(args, Topology(nvme, sriov, prof)...)
	}
	args = append(args, "-kernel", kernel, "-initrd", initrd, "-append", cmdline)
	args = append(args, spec.QEMUArgs...)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	progressed := make(chan struct{})
	killed := watchdog(ctx, cancel, progressed, spec.Timeout, accel)
	qemu := exec.CommandContext(ctx, arch.QEMU, args...)
	qemu.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	qemu.Stderr = &stderr
	stdout, err := qemu.StdoutPipe()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := qemu.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w (apt-get install %s)", arch.QEMU, err, arch.Package)
	}
	res := parse(resultsReader(stdout, progressed, spec.Stream))
	werr := qemu.Wait()
	res.Elapsed = time.Since(start)
	res.ConsoleLog = console
	switch {
	case killed() != nil:
		res.Err = killed()
	case werr != nil:
		res.Err = fmt.Errorf("qemu: %w: %s", werr, strings.TrimSpace(stderr.String()))
	case !res.Done:
		res.Err = errors.New("guest stopped before running every command (kernel panic or init crash?)")
	}
	return res, nil
}

// Topology is the guest's PCI devices, shaped as real machines are:
//
//	00:03.0, 00:06.0   two edus on the root bus (integrated endpoints),
//	                   each in its own IOMMU group
//	00:04.0 -> 01:00.0 an e1000e behind its own PCIe root port
//	00:05.0 -> 02:00.0 an nvme behind its own PCIe root port
//	00:07.0 -> 03:01.0, 03:02.0
//	                   two conventional PCI test devices behind a
//	                   PCIe-to-PCI bridge, sharing one IOMMU group
//	00:08.0 -> 04:00.0 an nvme with SR-IOV (two VFs) behind a root port
//
// A device alone behind a root port can be reset by its secondary bus
// (VFIO's hot reset); the bridge gives a group with several members. The
// root ports run at 2.5 GT/s: above 5 GT/s Linux waits after a bus reset
// for the link to report active, which QEMU's ports never do, and gives
// up (ENOTTY). With NVMeOnRootBus the two nvmes sit at 00:05.0 and 00:08.0.
func Topology(nvmeImage, sriovImage string, p Profile) []string {
	port := func(id, chassis, addr string) []string {
		return []string{"-device", "pcie-root-port,id=" + id + ",chassis=" + chassis + ",slot=" + chassis + ",addr=" + addr + ",x-speed=2_5,x-width=1"}
	}
	nvmeAt := func(rp, chassis, addr string) (ports []string, where string) {
		if p.NVMeOnRootBus {
			return nil, "addr=" + addr
		}
		return port(rp, chassis, addr), "bus=" + rp
	}
	args := []string{"-device", "edu,addr=0x3" + p.EduOptions}
	args = append(args, port("rp1", "1", "0x4")...)
	args = append(args, "-device", "e1000e,bus=rp1,romfile=") // no iPXE ROM for SeaBIOS to run
	ports, where := nvmeAt("rp2", "2", "0x5")
	args = append(args, ports...)
	args = append(args,
		"-drive", "file="+nvmeImage+",if=none,format=raw,id=nv0",
		"-device", "nvme,serial=vfioctl0,drive=nv0,"+where,
		"-device", "edu,addr=0x6"+p.EduOptions,
		"-device", "pcie-pci-bridge,id=br1,addr=0x7",
		"-device", "pci-testdev,bus=br1,addr=0x1",
		"-device", "pci-testdev,bus=br1,addr=0x2",
	)
	ports, where = nvmeAt("rp3", "3", "0x8")
	args = append(args, ports...)
	return append(args,
		"-device", "nvme-subsys,id=subsys0",
		"-device", "nvme,serial=vfioctl1,subsys=subsys0,sriov_max_vfs=2,sriov_vq_flexible=4,sriov_vi_flexible=2,max_ioqpairs=6,msix_qsize=6,"+where,
		"-drive", "file="+sriovImage+",if=none,format=raw,id=nv1",
		"-device", "nvme-ns,drive=nv1,nsid=1,shared=false",
	)
}

// NoProgressTimeout is how long a boot may go without a byte from the
// guest's init on the results port before it is reported as making no
// progress and killed: the kernel and init take a few seconds even under
// TCG on a busy host, so a silent guest is a hung one (firmware output on
// the console, such as SeaBIOS's "Booting from ROM...", does not count).
var NoProgressTimeout = 60 * time.Second

// resultsReader reads the results port, closing progressed at its first
// byte and copying it to stream (if not nil). The copy is taken after
// firstByte: a streamed boot's first byte is progress too (teeing the raw
// port left the watchdog blind, killing every streamed boot at
// NoProgressTimeout).
func resultsReader(port io.Reader, progressed chan struct{}, stream io.Writer) io.Reader {
	var r io.Reader = &firstByte{r: port, seen: progressed}
	if stream != nil {
		r = io.TeeReader(r, stream)
	}
	return r
}

// firstByte passes r through and closes seen at the first byte read.
type firstByte struct {
	r    io.Reader
	seen chan struct{}
	once sync.Once
}

func (f *firstByte) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if n > 0 {
		f.once.Do(func() { close(f.seen) })
	}
	return n, err
}

// watchdog kills the boot (through cancel) when progressed is not closed
// within NoProgressTimeout, or when the guest is still running timeout
// after it was, and returns a function reporting why it killed the boot.
// The guest's own limits (each command's, the test binaries'
// -test.timeout) also start after init has started, so they fall inside
// the host's.
func watchdog(ctx context.Context, cancel func(), progressed <-chan struct{}, timeout time.Duration, accel string) func() error {
	var mu sync.Mutex
	var why error
	kill := func(err error) {
		mu.Lock()
		why = err
		mu.Unlock()
		cancel()
	}
	go func() {
		t := time.NewTimer(NoProgressTimeout)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			kill(fmt.Errorf("no progress: the guest's init said nothing in %s under %s (the console log shows how far it got; VFIOCTL_ACCEL=tcg forces TCG)", NoProgressTimeout, accel))
			return
		case <-progressed:
		}
		t.Reset(timeout)
		select {
		case <-ctx.Done():
		case <-t.C:
			kill(fmt.Errorf("guest killed after its %s timeout (counted from its init's start)", timeout))
		}
	}()
	return func() error {
		mu.Lock()
		defer mu.Unlock()
		return why
	}
}

// parse reads the results port: framed command outputs.
func parse(r io.Reader) *Result {
	res := &Result{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var cur *CommandResult
	var out strings.Builder
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		switch {
		case strings.HasPrefix(line, frame.Begin+" "):
			cur = &CommandResult{Name: strings.TrimPrefix(line, frame.Begin+" "), ExitCode: -1}
			out.Reset()
		case strings.HasPrefix(line, frame.End+" ") && cur != nil:
			f := strings.Fields(line)
			fmt.Sscan(f[len(f)-1], &cur.ExitCode)
			cur.Output = out.String()
			res.Commands = append(res.Commands, *cur)
			cur = nil
		case strings.HasPrefix(line, frame.Kernel+" ") && cur == nil:
			res.Kernel = strings.TrimPrefix(line, frame.Kernel+" ")
		case line == frame.Done:
			res.Done = true
		case cur != nil:
			out.WriteString(line + "\n")
		case strings.HasPrefix(line, frame.Fatal):
			res.Err = errors.New(line)
		}
	}
	if cur != nil { // cut off mid-command: keep what arrived
		cur.Output = out.String()
		res.Commands = append(res.Commands, *cur)
	}
	return res
}

// buildInitramfs compiles the guest init and the test binaries and packs
// them with busybox, the kernel's modules (kernel.sh keeps them in
// modules/ beside the image; the init loads each) and the manifest into an
// uncompressed cpio.
func buildInitramfs(spec Spec, kernel string, manifest []string, work, dst string) error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	a := NewArchive()
	a.CharDev("dev/console", 5, 1)
	for _, d := range []string{"proc", "sys", "dev", "tmp", "run", "root", "mnt"} {
		a.Dir(d)
	}
	goarch := Profiles[spec.Profile].arch()
	initBin := filepath.Join(work, "init")
	if err := goBuild(root, goarch, "build", "-o", initBin, "./hack/qemu/guestinit"); err != nil {
		return err
	}
	if err := addFile(a, "init", initBin); err != nil {
		return err
	}
	// The host's busybox is for amd64 guests only; the other guests run
	// no shell commands.
	if goarch == "amd64" {
		if err := addBusybox(a); err != nil {
			return err
		}
	}
	mods, _ := filepath.Glob(filepath.Join(filepath.Dir(kernel), "modules", "*.ko"))
	for _, ko := range mods {
		if err := addFile(a, frame.ModulesDir+"/"+filepath.Base(ko), ko); err != nil {
			return err
		}
	}
	// The PCI ID database (pciutils), so the guest shows device names.
	for _, p := range []string{"/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids"} {
		if fileExists(p) {
			if err := addFile(a, "usr/share/misc/pci.ids", p); err != nil {
				return err
			}
			break
		}
	}
	m := frame.Manifest{Env: append([]string{"VFIOCTL_KERNEL=" + spec.Kernel, "VFIOCTL_PROFILE=" + spec.Profile}, append(manifest, spec.Env...)...)}
	for _, pkg := range spec.Packages {
		name := strings.Trim(strings.ReplaceAll(pkg, "/", "_"), "._")
		bin := filepath.Join(work, name+".test")
		dir, target := moduleOf(root, pkg)
		if err := goBuild(dir, goarch, testBuildArgs(spec.NoCheckptr, bin, target)...); err != nil {
			return err
		}
		if err := addFile(a, "vfioctl/"+name+".test", bin); err != nil {
			return err
		}
		argv := append([]string{"/vfioctl/" + name + ".test", "-test.v", "-test.timeout=" + (spec.Timeout * 8 / 10).String()}, spec.TestArgs...)
		m.Commands = append(m.Commands, frame.Command{Name: pkg, Argv: argv, Timeout: spec.Timeout})
	}
	for guest, pkg := range spec.Builds {
		bin := filepath.Join(work, filepath.Base(guest)+".bin")
		dir, target := moduleOf(root, pkg)
		if err := goBuild(dir, goarch, "build", "-o", bin, target); err != nil {
			return err
		}
		if err := addFile(a, guest, bin); err != nil {
			return err
		}
	}
	for guest, host := range spec.Files {
		if err := addFile(a, guest, host); err != nil {
			return err
		}
	}
	m.Commands = append(m.Commands, spec.Commands...)
	mj, err := json.Marshal(m)
	if err != nil {
		return err
	}
	a.File(frame.ManifestPath, mj, 0o644)
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	if _, err := a.WriteTo(w); err != nil {
		return err
	}
	return w.Flush()
}

// moduleOf finds the module holding pkg (a path relative to the repository
// root): a module of its own inside the repository (an outside program, the
// device plugin) is built there, against the library through its replace
// directive. It returns the directory to build in and the package there.
func moduleOf(root, pkg string) (dir, target string) {
	for d := filepath.Join(root, pkg); d != root && strings.HasPrefix(d, root); d = filepath.Dir(d) {
		if fileExists(filepath.Join(d, "go.mod")) {
			rel, _ := filepath.Rel(d, filepath.Join(root, pkg))
			if rel == "." {
				return d, "."
			}
			return d, "./" + filepath.ToSlash(rel)
		}
	}
	return root, pkg
}

// checkptrPackages are the packages the guest's test binaries compile
// with checkptr: the library, the device plugin's and the DRA driver's.
const checkptrPackages = "github.com/vfioctl/vfioctl/..."

// testBuildArgs are the go command's arguments that build the test binary
// of pkg (in its module) into bin for the guest. With checkptr every
// unsafe.Pointer conversion of the project's packages is checked at run
// time in the guest, as -race does on the host. The standard library and
// the modules the project imports are compiled as the guest's other
// binaries (vfioctl, the device plugin) and make lint's vet compile them,
// once per GOARCH, where -gcflags=all compiled them a second time: the
// x86 and arm64 boots' guest builds on an empty cache took 296 s instead
// of 370 s on 2 cores.
func testBuildArgs(noCheckptr bool, bin, pkg string) []string {
	args := []string{"test", "-c"}
	if !noCheckptr {
		args = append(args, "-gcflags="+checkptrPackages+"=-d=checkptr")
	}
	return append(args, "-o", bin, pkg)
}

// goBuildMu makes the guest builds of this process take turns. Boots
// starting together (TestVM's, once their kernel is built) build the same
// packages, and two go commands compiling the same package at once each
// compile it: the build cache shares only what is finished. Taking turns,
// the second finds the first's packages in the cache and only links; with
// the cache empty (a fresh machine) that saves minutes of CPU.
var goBuildMu sync.Mutex

// goBuild runs the go command for the guest in dir: static, no cgo, for
// the guest's GOARCH.
func goBuild(dir, goarch string, args ...string) error {
	goBuildMu.Lock()
	defer goBuildMu.Unlock()
	// go test and go run put their own toolchain first in PATH.
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func addFile(a *Archive, guest, host string) error {
	b, err := os.ReadFile(host)
	if err != nil {
		return err
	}
	a.File(guest, b, 0o755)
	return nil
}

// addBusybox adds Debian's static busybox and a link for each applet, for
// the demo's shell and for tests that need mke2fs or ip.
func addBusybox(a *Archive) error {
	const bb = "/bin/busybox"
	if !fileExists(bb) {
		return errors.New("qemu: /bin/busybox missing (apt-get install busybox-static)")
	}
	if err := addFile(a, "bin/busybox", bb); err != nil {
		return err
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox --list: %w", err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet != "busybox" && applet != "init" {
			a.Symlink("bin/"+applet, "busybox")
		}
	}
	return nil
}
