package qemu

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// The accelerator is chosen by a guest that really runs: some hosts expose
// a /dev/kvm on which QEMU aborts, others one on which QEMU starts a KVM
// machine whose vCPUs never run (the guest hangs after "Booting from
// ROM..."). So KVM is used only when the guest kernel, booted under it with
// a one-line init, prints a marker within probeTimeout; anything else falls
// back to TCG. The choice and its reason are printed once per process and
// kept for the host's uptime (keyed by its boot id), so the several test
// processes of one `make test` probe once.

const (
	accelMarker  = "VFIOCTL-ACCEL-PROBE-OK"
	probeTimeout = 20 * time.Second
)

type accelChoice struct {
	Accel, CPU, Reason string
}

var (
	accelMu     sync.Mutex
	accelChosen *accelChoice
)

// Accel returns the accelerator and CPU model for guests of kernel, probing
// on first use. VFIOCTL_ACCEL=tcg or kvm forces one without a probe.
func Accel(kernel string) (accel, cpu string) {
	accelMu.Lock()
	defer accelMu.Unlock()
	if accelChosen == nil {
		accelChosen = chooseAccel(kernel)
		fmt.Fprintf(os.Stderr, "qemu: accelerator %s (%s)\n", accelChosen.Accel, accelChosen.Reason)
	}
	return accelChosen.Accel, accelChosen.CPU
}

var tcg = accelChoice{Accel: "tcg", CPU: "max"}

func chooseAccel(kernel string) *accelChoice {
	switch os.Getenv("VFIOCTL_ACCEL") {
	case "tcg":
		c := tcg
		c.Reason = "VFIOCTL_ACCEL=tcg"
		return &c
	case "kvm":
		return &accelChoice{Accel: "kvm", CPU: "host", Reason: "VFIOCTL_ACCEL=kvm"}
	}
	cache := accelCachePath()
	if b, err := os.ReadFile(cache); err == nil {
		if f := strings.SplitN(strings.TrimSpace(string(b)), " ", 3); len(f) == 3 {
			return &accelChoice{Accel: f[0], CPU: f[1], Reason: f[2] + ", probed earlier since the host booted"}
		}
	}
	c := probeKVM(kernel)
	if cache != "" && os.MkdirAll(filepath.Dir(cache), 0o755) == nil {
		tmp := fmt.Sprintf("%s.%d", cache, os.Getpid())
		if os.WriteFile(tmp, []byte(c.Accel+" "+c.CPU+" "+c.Reason+"\n"), 0o644) == nil {
			os.Rename(tmp, cache) // atomic: concurrent probes agree or one wins
		}
	}
	return c
}

// accelCachePath is per host boot: a reboot (or a new machine) probes again.
func accelCachePath() string {
	id, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return filepath.Join(ArtifactDir(), "accel-"+strings.TrimSpace(string(id)))
}

// probeKVM boots kernel under KVM with an init that prints the marker and
// powers off.
func probeKVM(kernel string) *accelChoice {
	no := func(why string) *accelChoice { c := tcg; c.Reason = "KVM not used: " + why; return &c }
	if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err != nil {
		return no(err.Error())
	} else {
		f.Close()
	}
	work, err := os.MkdirTemp("", "vfioctl-accel")
	if err != nil {
		return no(err.Error())
	}
	defer os.RemoveAll(work)
	a := NewArchive()
	a.CharDev("dev/console", 5, 1)
	a.Dir("dev")
	if err := addBusybox(a); err != nil {
		return no(err.Error())
	}
	a.File("init", []byte("#!/bin/sh\necho "+accelMarker+"\npoweroff -f\n"), 0o755)
	initrd := filepath.Join(work, "initrd.cpio")
	f, err := os.Create(initrd)
	if err != nil {
		return no(err.Error())
	}
	_, err = a.WriteTo(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return no(err.Error())
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", "-machine", "q35", "-accel", "kvm", "-cpu", "host", "-m", "256M",
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot", "-serial", "stdio",
		"-kernel", kernel, "-initrd", initrd, "-append", "console=ttyS0 panic=-1 loglevel=1")
	cmd.WaitDelay = time.Second
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return no(err.Error())
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return no(err.Error())
	}
	found := false
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if strings.Contains(sc.Text(), accelMarker) {
			found = true
			break
		}
	}
	took := time.Since(start)
	cancel()
	cmd.Wait()
	switch {
	case found:
		return &accelChoice{Accel: "kvm", CPU: "host", Reason: fmt.Sprintf("a probe guest reached userspace under KVM in %.1f s", took.Seconds())}
	case took >= probeTimeout-time.Second:
		return no(fmt.Sprintf("a probe guest printed no marker in %s (the vCPUs do not run)", probeTimeout))
	}
	return no("QEMU failed under KVM: " + strings.TrimSpace(firstLine(stderr.String())))
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	if line == "" {
		return "no output"
	}
	return line
}
