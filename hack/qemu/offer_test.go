package qemu

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fragments layers kernel.sh's config fragments as its recipes do (a later
// fragment overrides an earlier one; "=n" reads as not set), dropping from
// the first the options a list names, as the linux61 recipe drops from
// base.config what 6.1 lacks.
func fragments(t *testing.T, absent string, names ...string) map[string]string {
	t.Helper()
	drop := map[string]bool{}
	if absent != "" {
		b, err := os.ReadFile(filepath.Join("kernel", absent))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.HasPrefix(line, "#") {
				drop[strings.TrimSpace(line)] = true
			}
		}
	}
	cfg := map[string]string{}
	for i, n := range names {
		b, err := os.ReadFile(filepath.Join("kernel", n))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(k, "#") && !(i == 0 && drop[k]) {
				cfg[k] = v
			}
		}
	}
	return cfg
}

// TestOffers: each boot's manifest as the recipes' fragments decide it.
func TestOffers(t *testing.T) {
	all := []string{"legacy", "iommufd-compat", "group-iommufd", "cdev"}
	for _, c := range []struct {
		name    string
		cfg     map[string]string
		profile string
		omit    bool
		want    []string
	}{
		{"legacy/intel", fragments(t, "", "base.config"), "intel", false, all},
		{"compat/amd", fragments(t, "", "base.config", "compat.config"), "amd", false, all},
		{"linux61/virtio: no iommufd (6.2) nor cdev (6.6)", fragments(t, "linux61.absent", "base.config", "linux61.config"), "virtio", false, []string{"legacy"}},
		{"legacy/virtio without allow_unsafe_interrupts", fragments(t, "", "base.config"), "virtio", true, nil},
		{"arm64/smmuv3", fragments(t, "", "arm64.config"), "smmuv3", false, all},
		{"ppc64le/pseries: SPAPR only", fragments(t, "", "ppc64le.config"), "pseries", false, []string{"legacy"}},
		{"no VFIO at all", map[string]string{"CONFIG_VFIO": "n"}, "intel", false, nil},
		{"no container, no iommufd container", map[string]string{"CONFIG_VFIO": "y", "CONFIG_VFIO_CONTAINER": "n", "CONFIG_IOMMUFD": "y"}, "intel", false, []string{"iommufd-compat", "group-iommufd"}},
	} {
		if got := Offers(c.cfg, Profiles[c.profile], c.omit); !slices.Equal(got, c.want) {
			t.Errorf("%s: offers %v, want %v", c.name, got, c.want)
		}
	}
}

// TestKernelConfig reads a kernel's .config as kernel.sh keeps it.
func TestKernelConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := "# comment\nCONFIG_VFIO=y\n# CONFIG_VFIO_CONTAINER is not set\nCONFIG_LOG_BUF_SHIFT=17\nCONFIG_CMDLINE=\"a=b\"\n"
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := KernelConfig(filepath.Join(dir, "bzImage"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"CONFIG_VFIO": "y", "CONFIG_VFIO_CONTAINER": "n", "CONFIG_LOG_BUF_SHIFT": "17", "CONFIG_CMDLINE": `"a=b"`}
	if len(got) != len(want) {
		t.Errorf("config %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if _, err := KernelConfig(filepath.Join(t.TempDir(), "bzImage")); err == nil {
		t.Error("a kernel without its configuration was read")
	}
}

// TestFeatures: the mdev samples and runtime PM each boot's kernel carries,
// as the recipes' fragments decide them.
func TestFeatures(t *testing.T) {
	samples, pm := MdevEnv+"=mtty,mdpy,mbochs", RuntimePMEnv+"=1"
	for _, c := range []struct {
		name string
		cfg  map[string]string
		want []string
	}{
		{"legacy", fragments(t, "", "base.config"), []string{samples, pm}},
		{"iommufdtest", fragments(t, "", "base.config", "iommufdtest.config"), []string{samples, pm}},
		{"linux61: samples as modules", fragments(t, "linux61.absent", "base.config", "linux61.config"), []string{samples, pm}},
		{"linux61 without its modules fragment", fragments(t, "linux61.absent", "base.config"), []string{MdevEnv + "=", pm}},
		{"arm64: samples, no runtime PM", fragments(t, "", "arm64.config"), []string{samples, RuntimePMEnv + "="}},
		{"ppc64le: neither", fragments(t, "", "ppc64le.config"), []string{MdevEnv + "=", RuntimePMEnv + "="}},
	} {
		if got := Features(c.cfg); !slices.Equal(got, c.want) {
			t.Errorf("%s: features %v, want %v", c.name, got, c.want)
		}
	}
}
