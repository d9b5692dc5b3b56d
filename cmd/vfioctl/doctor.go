package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/sysfs"
	"github.com/vfioctl/vfioctl/ioasid"
	"github.com/vfioctl/vfioctl/vfio"
)

// check is one doctor finding.
type check struct {
	Name   string `json:"name"`
	Status string `json:"status"` // ok, warn, fail, unknown
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func readTrim(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// power: on IBM POWER the IOMMU VFIO drives is SPAPR TCE.
var power = runtime.GOARCH == "ppc64le" || runtime.GOARCH == "ppc64"

func doctorChecks() []check {
	var out []check
	add := func(name, status, detail, fix string) { out = append(out, check{name, status, detail, fix}) }

	iommus, _ := filepath.Glob("/sys/class/iommu/*")
	noIOMMU := readTrim("/sys/module/vfio/parameters/enable_unsafe_noiommu_mode") == "Y"
	var names []string
	for _, i := range iommus {
		names = append(names, filepath.Base(i))
	}
	registered := ""
	if len(names) > 0 {
		registered = " (registered, covering no PCI device: " + strings.Join(names, ", ") + ")"
	}
	covers := sysfs.IOMMUCoversPCI()
	switch {
	case !covers && noIOMMU:
		add("IOMMU enabled", "warn", "no IOMMU"+registered+"; VFIO's unsafe no-IOMMU mode is on (vfio.enable_unsafe_noiommu_mode=1): devices can be bound only with bind --noiommu, get no isolation and taint the kernel",
			"enable VT-d/AMD-Vi and boot with intel_iommu=on (Intel); in a VM add a vIOMMU")
	case len(iommus) == 0:
		add("IOMMU enabled", "fail", "no IOMMU registered in /sys/class/iommu", "enable VT-d/AMD-Vi in firmware and boot with intel_iommu=on (Intel) or iommu=pt; in a VM add a vIOMMU")
	case !covers:
		add("IOMMU enabled", "warn", strings.Join(names, ", ")+" registered, but no PCI device is in an IOMMU group yet",
			"an IOMMU for other buses, or one that attaches a device only when a driver binds it (virtio-iommu): bind one and check again")
	default:
		add("IOMMU enabled", "ok", strings.Join(names, ", "), "")
	}

	unsafeT1 := sysfs.UnsafeInterrupts("vfio_iommu_type1")
	unsafeFD := sysfs.UnsafeInterrupts("iommufd")
	switch {
	case power:
		add("interrupt remapping", "ok", "not used on POWER: the SPAPR TCE container does not ask for it", "")
	case sysfs.InterruptRemapping() == sysfs.RemapPresent:
		add("interrupt remapping", "ok", "MSIs are remapped (IR- or ITS- entries in /proc/interrupts)", "")
	case unsafeT1 == "Y" || unsafeFD == "Y":
		add("interrupt remapping", "warn", fmt.Sprintf("not seen; unsafe interrupts allowed (type1=%s iommufd=%s)", unsafeT1, unsafeFD), "a device can forge MSIs: only acceptable on trusted setups")
	default:
		add("interrupt remapping", "warn", "no remapped interrupts seen in /proc/interrupts", "enable interrupt remapping (intremap=on for a QEMU intel-iommu); without it VFIO refuses devices (EPERM) unless vfio_iommu_type1.allow_unsafe_interrupts=1 and iommufd.allow_unsafe_interrupts=1")
	}

	if exists("/sys/bus/pci/drivers/vfio-pci") {
		add("vfio-pci driver", "ok", "loaded", "")
	} else {
		add("vfio-pci driver", "fail", "not loaded", "modprobe vfio-pci (kernel option VFIO_PCI)")
	}
	if exists(vfio.ContainerPath) {
		add("VFIO container", "ok", vfio.ContainerPath, "")
	} else {
		add("VFIO container", "warn", vfio.ContainerPath+" missing", "modprobe vfio (VFIO_CONTAINER, or IOMMUFD_VFIO_CONTAINER to serve it from iommufd)")
	}
	if exists(ioasid.Path) {
		add("iommufd", "ok", ioasid.Path+" (Linux 6.2+)", "")
	} else {
		add("iommufd", "warn", ioasid.Path+" missing: only the legacy container path is available", "kernel option IOMMUFD (Linux 6.2+), modprobe iommufd")
	}
	switch {
	case power:
		add("VFIO device cdev", "warn", "none on POWER: VFIO_DEVICE_CDEV depends on !SPAPR_TCE_IOMMU, and SPAPR TCE gives iommufd no domain", "use the legacy container (vfioctl dma-test --backend legacy)")
	case exists("/sys/class/vfio-dev") || exists("/dev/vfio/devices"):
		add("VFIO device cdev", "ok", "/dev/vfio/devices/vfioN for bound devices (Linux 6.6+)", "")
	default:
		add("VFIO device cdev", "warn", "no vfio-dev class: devices are reachable only through groups", "kernel option VFIO_DEVICE_CDEV (Linux 6.6+)")
	}

	// The same probe Open's Auto, the CDI spec writer and the device
	// plugin decide by.
	var offered, refused []string
	for _, of := range vfio.Offers("") {
		if of.OK {
			offered = append(offered, of.Backend.String())
		} else {
			refused = append(refused, of.Backend.String()+": "+of.Why)
		}
	}
	switch {
	case len(offered) == 0:
		add("backends", "fail", "none offered; "+strings.Join(refused, "; "), "see the checks above")
	case len(refused) > 0:
		add("backends", "ok", strings.Join(offered, ", ")+" (best first; not "+strings.Join(refused, "; ")+")", "")
	default:
		add("backends", "ok", strings.Join(offered, ", ")+" (best first)", "")
	}

	if c, err := vfio.OpenContainer(); err == nil {
		var models []string
		for _, m := range []vfio.IOMMUType{vfio.Type1v2, vfio.Type1, vfio.SPAPRTCEv2, vfio.SPAPRTCE, vfio.NoIOMMU} {
			if ok, _ := c.CheckExtension(int(m)); ok {
				models = append(models, m.String())
			}
		}
		c.Close()
		if len(models) > 0 {
			add("container IOMMU models", "ok", strings.Join(models, ", "), "")
		} else {
			add("container IOMMU models", "fail", "the container offers none", "load the IOMMU backend: modprobe vfio_iommu_type1 (vfio_iommu_spapr_tce on POWER)")
		}
	}

	switch fd, err := ioasid.OpenPath(vfio.ContainerPath); {
	case !exists(vfio.ContainerPath):
		add("/dev/vfio/vfio served by iommufd", "unknown", "no "+vfio.ContainerPath, "")
	case err != nil && (errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM)):
		add("/dev/vfio/vfio served by iommufd", "unknown", "needs root to probe", "run vfioctl doctor as root")
	case err != nil:
		add("/dev/vfio/vfio served by iommufd", "unknown", err.Error(), "")
	default:
		ioas, aerr := fd.AllocIOAS()
		if aerr == nil {
			ioas.Close()
			add("/dev/vfio/vfio served by iommufd", "ok", "yes: the container is iommufd's compat layer (IOMMUFD_VFIO_CONTAINER)", "")
		} else {
			add("/dev/vfio/vfio served by iommufd", "ok", "no: VFIO's own container (VFIO_CONTAINER)", "")
		}
		fd.Close()
	}

	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &rl); err == nil {
		cur := "unlimited"
		if rl.Cur != unix.RLIM_INFINITY {
			cur = fmt.Sprintf("%d KiB", rl.Cur>>10)
		}
		if rl.Cur != unix.RLIM_INFINITY && rl.Cur < 64<<20 && os.Geteuid() != 0 {
			add("RLIMIT_MEMLOCK", "warn", cur+": DMA mappings pin memory and count against it", "raise it: ulimit -l unlimited, LimitMEMLOCK=infinity in a systemd unit, or /etc/security/limits.conf")
		} else {
			add("RLIMIT_MEMLOCK", "ok", cur, "")
		}
	}
	if n := readTrim("/proc/sys/vm/nr_hugepages"); n != "" {
		if n == "0" {
			add("huge pages", "warn", "none reserved: 2 MiB IOMMU mappings need hugetlb memory", "echo 512 > /proc/sys/vm/nr_hugepages (1 GiB of 2 MiB pages)")
		} else {
			add("huge pages", "ok", n+" x 2 MiB reserved", "")
		}
	}
	return out
}

func doctorCommand() *cli.Command {
	return &cli.Command{
		Name:  "doctor",
		Usage: "check that this host is ready for VFIO and iommufd, and say how to fix what is not",
		UsageText: `vfioctl doctor [--json]

Exits 1 when a check fails (a warning does not).`,
		Flags: []cli.Flag{jsonFlag},
		Action: func(c *cli.Context) error {
			checks := doctorChecks()
			err := emit(c, checks, func(w io.Writer) {
				fprintf(w, "CHECK\tSTATUS\tDETAIL\n")
				for _, ch := range checks {
					fprintf(w, "%s\t%s\t%s\n", ch.Name, ch.Status, ch.Detail)
					if ch.Fix != "" && ch.Status != "ok" {
						fprintf(w, "\t\t-> %s\n", ch.Fix)
					}
				}
			})
			if err != nil {
				return err
			}
			for _, ch := range checks {
				if ch.Status == "fail" {
					return cli.Exit("", exitFailure)
				}
			}
			return nil
		},
	}
}
