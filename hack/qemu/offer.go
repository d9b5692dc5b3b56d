package qemu

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// OfferEnv names, in every guest command's environment, the vfio backends
// the boot must offer (comma-separated, as vfio.Backend.String names them).
// Guest tests compare what they find with it: a backend the manifest lists
// that fails to open a device fails the test instead of skipping it, and
// one it leaves out must be refused as unsupported.
const OfferEnv = "VFIOCTL_EXPECT_BACKENDS"

// KernelConfig reads the configuration kernel.sh keeps beside a kernel
// image ("config"): CONFIG_X=y gives "y", "# CONFIG_X is not set" gives
// "n", and an option the kernel does not know has no entry.
func KernelConfig(image string) (map[string]string, error) {
	f, err := os.Open(filepath.Join(filepath.Dir(image), "config"))
	if err != nil {
		return nil, fmt.Errorf("qemu: the kernel's configuration (kernel.sh keeps it beside the image): %w", err)
	}
	defer f.Close()
	cfg := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if opt, ok := strings.CutPrefix(line, "# "); ok {
			if name, ok := strings.CutSuffix(opt, " is not set"); ok {
				cfg[name] = "n"
			}
			continue
		}
		if name, val, ok := strings.Cut(line, "="); ok {
			cfg[name] = val
		}
	}
	return cfg, sc.Err()
}

// Offers is the manifest of a boot: the vfio backends its kernel and
// machine give, decided from the kernel's configuration and the profile,
// never from a probe in the guest.
//
//   - legacy: the type1 container (VFIO_CONTAINER, or iommufd serving
//     /dev/vfio/vfio with IOMMUFD_VFIO_CONTAINER; kernels before 6.2 have
//     no such option and always build the container), and on pSeries its
//     SPAPR TCE model, the only backend there;
//   - iommufd-compat and group-iommufd: IOMMUFD (Linux 6.2);
//   - cdev: VFIO_DEVICE_CDEV (Linux 6.6);
//   - none at all under virtio-iommu without the allow_unsafe_interrupts
//     parameters (withoutProfileCmdline): VFIO refuses an IOMMU without
//     interrupt remapping.
func Offers(cfg map[string]string, p Profile, withoutProfileCmdline bool) []string {
	if cfg["CONFIG_VFIO"] != "y" || (p.Name == "virtio" && withoutProfileCmdline) {
		return nil
	}
	container, known := cfg["CONFIG_VFIO_CONTAINER"]
	var out []string
	if container == "y" || !known || cfg["CONFIG_IOMMUFD_VFIO_CONTAINER"] == "y" {
		out = append(out, "legacy")
	}
	if p.arch() == "ppc64le" {
		return out // SPAPR TCE gives iommufd no paging domain
	}
	if cfg["CONFIG_IOMMUFD"] == "y" {
		out = append(out, "iommufd-compat", "group-iommufd")
	}
	if cfg["CONFIG_VFIO_DEVICE_CDEV"] == "y" {
		out = append(out, "cdev")
	}
	return out
}

// MdevEnv names, in every guest command's environment, the sample mdev
// parents the boot's kernel carries (comma-separated: mtty, mdpy,
// mbochs), from CONFIG_SAMPLE_VFIO_MDEV_* (built in, or modules the
// guest's init loads: Linux 6.1 builds them only as modules). A guest test of mediated
// devices fails when a listed parent is missing and skips only when the
// list is empty.
const MdevEnv = "VFIOCTL_EXPECT_MDEV"

// RuntimePMEnv is "1" in every guest command's environment when the boot's
// kernel has runtime power management (CONFIG_PM): VFIO's low-power
// features then move a device to D3hot; without it they change nothing.
const RuntimePMEnv = "VFIOCTL_EXPECT_RUNTIME_PM"

// Features is the rest of a boot's manifest, read from its kernel's
// configuration like Offers: the environment entries MdevEnv and
// RuntimePMEnv.
func Features(cfg map[string]string) []string {
	var parents []string
	for _, p := range []string{"mtty", "mdpy", "mbochs"} {
		if v := cfg["CONFIG_SAMPLE_VFIO_MDEV_"+strings.ToUpper(p)]; v == "y" || v == "m" { // m: loaded by the guest's init
			parents = append(parents, p)
		}
	}
	pm := ""
	if cfg["CONFIG_PM"] == "y" {
		pm = "1"
	}
	return []string{MdevEnv + "=" + strings.Join(parents, ","), RuntimePMEnv + "=" + pm}
}
