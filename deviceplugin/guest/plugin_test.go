// Package guest runs the device plugin against real VFIO devices inside
// the e2e VM (hack/qemu): `go test ./tests/e2e` boots it. On the host the
// tests skip; plugin's own tests cover the protocol there.
package guest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	oci "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	api "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	cdiapi "tags.cncf.io/container-device-interface/pkg/cdi"

	"github.com/vfioctl/vfioctl/cdi"
	"github.com/vfioctl/vfioctl/deviceplugin/internal/kubelettest"
	"github.com/vfioctl/vfioctl/deviceplugin/plugin"
	"github.com/vfioctl/vfioctl/hack/qemu/frame"
	"github.com/vfioctl/vfioctl/pci"
	"github.com/vfioctl/vfioctl/vfio"
)

func TestMain(m *testing.M) {
	if os.Getenv(frame.GuestEnv) == "" {
		fmt.Println("guest tests run inside the e2e VM: go test ./tests/e2e")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// edus binds the guest's edu devices (1234:11e8, each in a group of its
// own) to vfio-pci and returns their addresses.
func edus(t *testing.T) []string {
	t.Helper()
	devs, err := pci.List()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range devs {
		if d.Vendor != 0x1234 || d.Device != 0x11e8 {
			continue
		}
		if d.Driver != pci.VFIODriver {
			if _, err := pci.Bind(d.Address, pci.BindOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, d.Address)
	}
	if len(out) < 2 {
		t.Fatalf("want two edu devices, found %v", out)
	}
	return out
}

// TestDevicePluginServesEdu: the plugin, with its real sysfs source, offers
// the guest's two edus to a kubelet (the API's own types over a unix
// socket); Allocate gives nodes of one backend that exist and open, CDI
// names that the CDI library resolves to the same nodes (major and minor
// as the host has them), and the addresses in PCI_RESOURCE_*. An edu
// unbound from vfio-pci turns Unhealthy and cannot be allocated; bound
// again it is Healthy.
func TestDevicePluginServesEdu(t *testing.T) {
	addrs := edus(t)
	a, b := addrs[0], addrs[1]
	dir, cdiDir := t.TempDir(), t.TempDir()
	k := kubelettest.Start(t, dir)
	defer k.Stop()
	res, err := plugin.ParseResource("vfioctl.dev/edu=1234:11e8")
	if err != nil {
		t.Fatal(err)
	}
	p := &plugin.Plugin{Resource: res, CDIDir: cdiDir, Dir: dir, Interval: 100 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	if r := k.Registration(); r.ResourceName != res.Name {
		t.Fatalf("registered %+v", r)
	}
	k.WaitFor(map[string]string{a: api.Healthy, b: api.Healthy})

	// The backend: iommufd where the kernel gives every edu a cdev and has
	// /dev/iommu (6.6+), else the legacy container.
	wantBackend := cdi.BackendLegacy
	if _, err := os.Stat("/dev/iommu"); err == nil {
		if d, _ := pci.Get(a); d.VFIOCdev != "" {
			wantBackend = cdi.BackendIOMMUFD
		}
	}
	resp, err := k.Allocate(a)
	if err != nil {
		t.Fatal(err)
	}
	c := resp.ContainerResponses[0]
	if c.Envs[res.EnvName()] != a || c.Envs["VFIOCTL_BACKEND"] != wantBackend {
		t.Errorf("envs %v, want %s=%s and backend %s", c.Envs, res.EnvName(), a, wantBackend)
	}
	var nodes []string
	for _, d := range c.Devices {
		nodes = append(nodes, d.HostPath)
		f, err := os.OpenFile(d.HostPath, os.O_RDWR, 0)
		if err != nil {
			t.Errorf("allocated node %s: %v", d.HostPath, err)
			continue
		}
		f.Close()
	}
	da, _ := pci.Get(a)
	want := []string{cdi.ContainerNode, da.VFIOGroup}
	if wantBackend == cdi.BackendIOMMUFD {
		want = []string{cdi.IOMMUFDNode, da.VFIOCdev}
	}
	if strings.Join(nodes, " ") != strings.Join(want, " ") {
		t.Errorf("allocated nodes %v, want %v", nodes, want)
	}
	t.Logf("backend %s, nodes %v", c.Envs["VFIOCTL_BACKEND"], nodes)
	// The word is one vfio.ParseBackend (and vfioctl --backend) reads, and
	// the backend it names opens the device through the nodes allocated.
	backend, err := vfio.ParseBackend(c.Envs["VFIOCTL_BACKEND"])
	if err != nil {
		t.Fatalf("VFIOCTL_BACKEND: %v", err)
	}
	h, err := vfio.Open(a, &vfio.Options{Backend: backend})
	if err != nil {
		t.Fatalf("open %s with the allocated backend %s: %v", a, backend, err)
	}
	if err := h.Close(); err != nil {
		t.Error(err)
	}

	// The CDI names resolve, through the CDI library as a runtime does, to
	// the same nodes with the host's device numbers.
	if len(c.CdiDevices) != 1 || c.CdiDevices[0].Name != "vfioctl.dev/edu="+a {
		t.Fatalf("CDI devices %v", c.CdiDevices)
	}
	cache, _ := cdiapi.NewCache(cdiapi.WithSpecDirs(cdiDir), cdiapi.WithAutoRefresh(false))
	spec := &oci.Spec{Linux: &oci.Linux{}}
	if _, err := cache.InjectDevices(spec, c.CdiDevices[0].Name); err != nil {
		t.Fatal(err)
	}
	var injected []string
	for _, d := range spec.Linux.Devices {
		injected = append(injected, d.Path)
		var st unix.Stat_t
		if err := unix.Stat(d.Path, &st); err != nil {
			t.Fatal(err)
		}
		if d.Type != "c" || d.Major != int64(unix.Major(st.Rdev)) || d.Minor != int64(unix.Minor(st.Rdev)) {
			t.Errorf("injected %s as %s %d:%d, the node is %d:%d", d.Path, d.Type, d.Major, d.Minor, unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
	}
	if strings.Join(injected, " ") != strings.Join(want, " ") {
		t.Errorf("CDI injected %v, want %v", injected, want)
	}

	// Unbound, b turns Unhealthy; bound again, Healthy.
	if _, err := pci.Unbind(b); err != nil {
		t.Fatal(err)
	}
	k.WaitFor(map[string]string{a: api.Healthy, b: api.Unhealthy})
	if _, err := k.Allocate(b); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("allocating the unbound edu: %v", err)
	}
	if _, err := pci.Bind(b, pci.BindOptions{}); err != nil {
		t.Fatal(err)
	}
	k.WaitFor(map[string]string{a: api.Healthy, b: api.Healthy})
	if _, err := k.Allocate(a, b); err != nil {
		t.Errorf("allocating both: %v", err)
	}

	// Removed, b turns Unhealthy; rescanned it is back without a driver
	// (still Unhealthy) until bound again.
	write(t, "/sys/bus/pci/devices/"+b+"/remove", "1")
	k.WaitFor(map[string]string{a: api.Healthy, b: api.Unhealthy})
	write(t, "/sys/bus/pci/rescan", "1")
	if _, err := pci.Bind(b, pci.BindOptions{}); err != nil {
		t.Fatal(err)
	}
	k.WaitFor(map[string]string{a: api.Healthy, b: api.Healthy})
}

func write(t *testing.T, path, v string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(v), 0); err != nil {
		t.Fatal(err)
	}
}

// TestDevicePluginCommand runs the vfioctl-device-plugin binary as a
// DaemonSet would, with no --resource: it finds the edus on vfio-pci,
// registers vfioctl.dev/pci-1234_11e8 with the kubelet, reports both Healthy,
// writes the resource's CDI spec, and exits 0 on SIGTERM.
func TestDevicePluginCommand(t *testing.T) {
	const bin = "/bin/vfioctl-device-plugin"
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is not in the guest: %v", bin, err)
	}
	addrs := edus(t)
	dir, cdiDir := t.TempDir(), t.TempDir()
	k := kubelettest.Start(t, dir)
	defer k.Stop()
	var out strings.Builder
	cmd := exec.Command(bin, "--plugin-dir", dir, "--cdi-dir", cdiDir, "--interval", "100ms")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		t.Logf("plugin output:\n%s", out.String())
	}()
	if r := k.Registration(); r.ResourceName != "vfioctl.dev/pci-1234_11e8" {
		t.Fatalf("registered %+v", r)
	}
	k.WaitFor(map[string]string{addrs[0]: api.Healthy, addrs[1]: api.Healthy})
	if pub, errs := cdi.List(cdiDir); len(pub) != 2 || len(errs) != 0 || pub[0].Name != "vfioctl.dev/pci-1234_11e8="+addrs[0] {
		t.Errorf("CDI spec: %+v %v", pub, errs)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("after SIGTERM: %v", err)
	}
}

// scan is what the plugin's sysfs source reports for a resource, by address.
func scan(t *testing.T, res plugin.Resource) map[string]plugin.State {
	t.Helper()
	src := &plugin.SysfsSource{Resource: res}
	states, err := src.Scan()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]plugin.State{}
	for _, s := range states {
		out[s.Address] = s
	}
	return out
}

// unhealthyFor requires every address to be reported Unhealthy with a
// reason that says all of words.
func unhealthyFor(t *testing.T, states map[string]plugin.State, addrs []string, words ...string) {
	t.Helper()
	for _, a := range addrs {
		s, ok := states[a]
		if !ok {
			t.Errorf("%s is not reported at all: %+v", a, states)
			continue
		}
		if s.Healthy {
			t.Errorf("%s reported Healthy, want Unhealthy saying %q", a, words)
		}
		for _, w := range words {
			if !strings.Contains(s.Why, w) {
				t.Errorf("%s Unhealthy because %q, want it to say %q", a, s.Why, w)
			}
		}
	}
}

// TestPluginOffersWholeViableGroups: the plugin offers only a device alone
// in a viable group. The two pci-testdevs behind the PCIe-to-PCI bridge,
// both on vfio-pci, share one group: both Unhealthy, saying so, and the
// kubelet sees them so. Under intel-iommu, q35's ICH9 functions share a
// group too; once the SATA function goes back to ahci that group is not
// viable, and the LPC function is Unhealthy for that reason, naming ahci.
func TestPluginOffersWholeViableGroups(t *testing.T) {
	res, err := plugin.ParseResource("vfioctl.dev/testdev=1b36:0005")
	if err != nil {
		t.Fatal(err)
	}
	devs, err := pci.List()
	if err != nil {
		t.Fatal(err)
	}
	var pair []string
	for _, d := range devs {
		if d.Vendor == 0x1b36 && d.Device == 0x0005 {
			if d.IOMMUGroup < 0 {
				if os.Getenv("VFIOCTL_PROFILE") != "virtio" {
					t.Fatalf("pci-testdev %s has no IOMMU group; only virtio-iommu (QEMU 7.2) leaves the bridge's devices untranslated", d.Address)
				}
				t.Skipf("pci-testdev %s has no IOMMU group under virtio-iommu (QEMU 7.2): vfio-pci cannot take it", d.Address)
			}
			pair = append(pair, d.Address)
		}
	}
	if len(pair) != 2 {
		t.Fatalf("want two pci-testdevs behind the bridge, found %v", pair)
	}
	if _, err := pci.Bind(pair[0], pci.BindOptions{Group: true}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, a := range pair {
			if _, err := pci.Unbind(a); err != nil {
				t.Errorf("unbind %s: %v", a, err)
			}
		}
	}()
	unhealthyFor(t, scan(t, res), pair, "shares IOMMU group")

	dir := t.TempDir()
	k := kubelettest.Start(t, dir)
	defer k.Stop()
	p := &plugin.Plugin{Resource: res, CDIDir: t.TempDir(), Dir: dir, Interval: 100 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	k.Registration()
	k.WaitFor(map[string]string{pair[0]: api.Unhealthy, pair[1]: api.Unhealthy})
	if _, err := k.Allocate(pair[0]); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("allocating a device that shares its group: %v, want FailedPrecondition", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}

	const lpc, sata = "0000:00:1f.0", "0000:00:1f.2"
	l, _ := pci.Get(lpc)
	s, _ := pci.Get(sata)
	if l == nil || s == nil || l.IOMMUGroup < 0 || l.IOMMUGroup != s.IOMMUGroup {
		if os.Getenv("VFIOCTL_PROFILE") == "intel" {
			t.Fatalf("under intel-iommu the ICH9 functions share a group: %+v, %+v", l, s)
		}
		t.Logf("the ICH9 functions do not share a group here: the viability half runs under intel-iommu")
		return
	}
	if _, err := pci.Bind(lpc, pci.BindOptions{Group: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := pci.Restore(sata); err != nil { // ahci takes it back: the group is not viable
		t.Fatal(err)
	}
	defer func() {
		g, _ := pci.GetGroup(l.IOMMUGroup)
		for _, m := range g.Devices {
			if d, _ := pci.Get(m); d != nil && d.Driver == pci.VFIODriver {
				_, err := pci.Restore(m)
				if errors.Is(err, pci.ErrNoRecord) { // it had no driver before
					_, err = pci.Unbind(m)
				}
				if err != nil {
					t.Errorf("restore %s: %v", m, err)
				}
			}
		}
	}()
	lpcRes, err := plugin.ParseResource(fmt.Sprintf("vfioctl.dev/lpc=%04x:%04x", l.Vendor, l.Device))
	if err != nil {
		t.Fatal(err)
	}
	unhealthyFor(t, scan(t, lpcRes), []string{lpc}, "is not viable", sata+" on ahci")
}
