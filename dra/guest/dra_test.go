// Package guest runs the DRA driver against the real edus and nvme inside
// the e2e VM (hack/qemu): `go test ./tests/e2e` boots it. The API server is
// client-go's fake clientset in the test process; the kubelet is
// kubelettest on the driver's real unix sockets. On the host the tests
// skip; the driver's own tests cover the protocol there.
package guest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"

	"github.com/vfioctl/vfioctl/cdi"
	"github.com/vfioctl/vfioctl/dra/driver"
	"github.com/vfioctl/vfioctl/dra/internal/kubelettest"
	"github.com/vfioctl/vfioctl/hack/qemu"
	"github.com/vfioctl/vfioctl/hack/qemu/frame"
	"github.com/vfioctl/vfioctl/pci"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(child())
	}
	if os.Getenv(frame.GuestEnv) == "" {
		fmt.Println("guest tests run inside the e2e VM: go test ./tests/e2e")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// setup finds the edus (given back to no driver, as at boot), an nvme on
// the nvme driver, the SR-IOV nvme (its PF) and the e1000e, and the
// selection that picks them: the edus' and the nvmes' IDs (PFs and VFs
// alike) and the NIC's address.
func setup(t *testing.T) (edus []string, nvme, pf, nic string, sel driver.Selection) {
	t.Helper()
	devs, err := pci.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range devs {
		switch {
		case d.Vendor == 0x1234 && d.Device == 0x11e8:
			attach(t, d)
			edus = append(edus, d.Address)
		case d.Vendor == 0x1b36 && d.Device == 0x0010 && d.TotalVFs > 0:
			pf = d.Address
		case d.Vendor == 0x1b36 && d.Device == 0x0010 && d.Driver == "nvme" && d.PhysFn == "" && nvme == "":
			nvme = d.Address
		case d.Vendor == 0x8086 && d.Device == 0x10d3:
			nic = d.Address
		}
	}
	if len(edus) < 2 || nvme == "" || pf == "" || nic == "" {
		t.Fatalf("want two edus, an nvme on its driver, an SR-IOV nvme and an e1000e: edus %v, nvme %q, PF %q, NIC %q", edus, nvme, pf, nic)
	}
	return edus, nvme, pf, nic, driver.Selection{IDs: [][2]uint16{{0x1234, 0x11e8}, {0x1b36, 0x0010}}, Addresses: []string{nic}}
}

// with and without are slice predicates: the device named is (not)
// published.
func with(names ...string) func(*resourceapi.ResourceSlice) bool {
	return func(s *resourceapi.ResourceSlice) bool {
		for _, n := range names {
			if !slices.ContainsFunc(s.Spec.Devices, func(d resourceapi.Device) bool { return d.Name == n }) {
				return false
			}
		}
		return true
	}
}

func without(name string) func(*resourceapi.ResourceSlice) bool {
	return func(s *resourceapi.ResourceSlice) bool { return !with(name)(s) }
}

// attach leaves the edu d on no driver (earlier tests leave edus bound)
// and in an IOMMU group: virtio-iommu attaches a device, giving it a
// group, only when a driver first probes it, and the DRA driver publishes
// only devices with a group.
func attach(t *testing.T, d *pci.Device) {
	t.Helper()
	if d.IOMMUGroup < 0 {
		if _, err := pci.Bind(d.Address, pci.BindOptions{}); err != nil {
			t.Fatal(err)
		}
		d.Driver = pci.VFIODriver
	}
	if d.Driver == pci.VFIODriver {
		if _, err := pci.Unbind(d.Address); err != nil {
			t.Fatal(err)
		}
	}
}

type node struct {
	client *fake.Clientset
	state  string
	cdiDir string
	sel    driver.Selection
}

// serve starts a driver (a new one each call, as a restarted binary is)
// on the node's state, until the test ends.
func (n *node) serve(t *testing.T) (*kubelettest.Kubelet, context.Context) {
	d, err := driver.New(driver.Options{NodeName: "guest", Selection: n.sel, StateDir: n.state, CDIDir: n.cdiDir}, driver.SysfsHost{})
	if err != nil {
		t.Fatal(err)
	}
	return kubelettest.Serve(t, func(ctx context.Context, opts ...kubeletplugin.Option) error {
		return d.Serve(ctx, n.client, 100*time.Millisecond, opts...)
	})
}

func (n *node) claim(t *testing.T, uid, name string, devices ...string) {
	c := &resourceapi.ResourceClaim{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID(uid)},
		Status: resourceapi.ResourceClaimStatus{Allocation: &resourceapi.AllocationResult{}}}
	for i, d := range devices {
		c.Status.Allocation.Devices.Results = append(c.Status.Allocation.Devices.Results, resourceapi.DeviceRequestAllocationResult{
			Request: fmt.Sprintf("r%d", i), Driver: driver.DefaultName, Pool: "guest", Device: d})
	}
	if _, err := n.client.ResourceV1().ResourceClaims("default").Create(context.Background(), c, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func str(a map[resourceapi.QualifiedName]resourceapi.DeviceAttribute, k string) string {
	if v := a[resourceapi.QualifiedName(k)].StringValue; v != nil {
		return *v
	}
	return ""
}

// TestDRA: the slice lists the edus and the nvme with what sysfs says of
// them and follows a removal and a rescan; prepare binds a claim's devices
// and its CDI names resolve to nodes that open; a driver restarted on the
// same state answers the same prepare without binding again; unprepare
// gives the nvme back to the nvme driver and the edu to none.
func TestDRA(t *testing.T) {
	edus, nvme, pf, nic, sel := setup(t)
	n := &node{client: fake.NewSimpleClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "guest", UID: "guest-uid"}}),
		state: t.TempDir(), cdiDir: t.TempDir(), sel: sel}
	var all []string
	for _, a := range append(slices.Clone(edus), nvme, pf, nic) {
		all = append(all, driver.DeviceName(a))
	}
	cdev := slices.Contains(strings.Split(os.Getenv(qemu.OfferEnv), ","), "cdev")
	claimed := []string{driver.DeviceName(edus[0]), driver.DeviceName(nvme)}
	var prepared []string

	t.Run("publish and prepare", func(t *testing.T) {
		k, ctx := n.serve(t)
		slice := kubelettest.WaitSlice(t, n.client, with(all...))
		for _, dev := range slice.Spec.Devices {
			a := dev.Attributes
			pd, err := pci.Get(str(a, driver.AttrAddress))
			if err != nil {
				t.Fatalf("published %s: %v", dev.Name, err)
			}
			if dev.Name != driver.DeviceName(pd.Address) || *a[driver.AttrGroup].IntValue != int64(pd.IOMMUGroup) || str(a, driver.AttrDriver) != orNone(pd.Driver) ||
				str(a, driver.AttrVendor) != fmt.Sprintf("%04x", pd.Vendor) || *a[driver.AttrCdev].BoolValue != cdev || !strings.HasPrefix(str(a, driver.AttrPCIeRoot), "pci0000:") {
				t.Errorf("%s: attributes %v; sysfs says %+v (cdev offered: %v)", dev.Name, a, pd, cdev)
			}
		}
		// Removal and rescan of an edu: the slice follows both.
		if err := os.WriteFile(filepath.Join("/sys/bus/pci/devices", edus[1], "remove"), []byte("1"), 0); err != nil {
			t.Fatal(err)
		}
		kubelettest.WaitSlice(t, n.client, without(driver.DeviceName(edus[1])))
		if err := os.WriteFile("/sys/bus/pci/rescan", []byte("1"), 0); err != nil {
			t.Fatal(err)
		}
		back, err := pci.Get(edus[1])
		if err != nil {
			t.Fatalf("after the rescan: %v", err)
		}
		attach(t, back)
		kubelettest.WaitSlice(t, n.client, with(all...))

		n.claim(t, "uid-vm", "vm", claimed...)
		devs, err := k.Prepare(ctx, "default", "vm", "uid-vm")
		if err != nil || len(devs) != 2 {
			t.Fatalf("prepare: %v, %v", devs, err)
		}
		// The bind shows in the slice: the claimed edu's driver attribute.
		kubelettest.WaitSlice(t, n.client, func(s *resourceapi.ResourceSlice) bool {
			i := slices.IndexFunc(s.Spec.Devices, func(d resourceapi.Device) bool { return d.Name == claimed[0] })
			return i >= 0 && str(s.Spec.Devices[i].Attributes, driver.AttrDriver) == pci.VFIODriver
		})
		for _, a := range []string{edus[0], nvme} {
			if d, _ := pci.Get(a); d.Driver != pci.VFIODriver {
				t.Errorf("after prepare %s is on %q", a, d.Driver)
			}
		}
		inUse(t, ctx, k, n, nic)
		sriov(t, n, pf)

		pub, errs := cdi.List(n.cdiDir)
		if len(errs) > 0 {
			t.Fatalf("CDI specs: %v", errs)
		}
		for _, d := range devs {
			for _, id := range d.CdiDeviceIds {
				prepared = append(prepared, id)
				i := slices.IndexFunc(pub, func(p cdi.Published) bool { return p.Name == id })
				if i < 0 {
					t.Fatalf("CDI device %s is in no spec of %s: %+v", id, n.cdiDir, pub)
				}
				for _, node := range pub[i].Nodes {
					f, err := os.OpenFile(node, os.O_RDWR, 0)
					if err != nil {
						t.Errorf("%s: node %s: %v", id, node, err)
						continue
					}
					f.Close()
				}
				t.Logf("%s: nodes %v", id, pub[i].Nodes)
			}
		}
	})
	t.Run("restarted", func(t *testing.T) {
		k, ctx := n.serveChild(t)
		before, _ := os.Stat(filepath.Join(n.state, "uid-vm.json"))
		devs, err := k.Prepare(ctx, "default", "vm", "uid-vm")
		if err != nil {
			t.Fatal(err)
		}
		var again []string
		for _, d := range devs {
			again = append(again, d.CdiDeviceIds...)
		}
		after, _ := os.Stat(filepath.Join(n.state, "uid-vm.json"))
		if !slices.Equal(again, prepared) || before == nil || after == nil || !after.ModTime().Equal(before.ModTime()) {
			t.Errorf("prepare after a restart: %v (first %v); checkpoint rewritten: %v", again, prepared, before == nil || after == nil || !after.ModTime().Equal(before.ModTime()))
		}
		if err := k.Unprepare(ctx, "default", "vm", "uid-vm"); err != nil {
			t.Fatal(err)
		}
		for a, want := range map[string]string{edus[0]: "", nvme: "nvme"} {
			if d, _ := pci.Get(a); d.Driver != want {
				t.Errorf("after unprepare %s is on %q, want %q", a, d.Driver, want)
			}
		}
		if pub, _ := cdi.List(n.cdiDir); len(pub) != 0 {
			t.Errorf("after unprepare the specs still publish %v", pub)
		}

		if err := k.Unprepare(ctx, "default", "vm", "uid-vm"); err != nil {
			t.Errorf("a second unprepare: %v", err)
		}
	})
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// inUse: a claim of the NIC while its interface is up with an address is
// refused, the reason (what the kubelet shows in the pod's events) naming
// the interface and the address, and the NIC stays on e1000e.
func inUse(t *testing.T, ctx context.Context, k *kubelettest.Kubelet, n *node, nic string) {
	t.Helper()
	ifaces, err := os.ReadDir(filepath.Join("/sys/bus/pci/devices", nic, "net"))
	if err != nil || len(ifaces) != 1 {
		t.Fatalf("e1000e netdev: %v %v", ifaces, err)
	}
	name := ifaces[0].Name()
	link, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(192, 0, 2, 7), Mask: net.CIDRMask(24, 32)}}
	if err := netlink.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	if err := netlink.AddrAdd(link, addr); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = netlink.AddrDel(link, addr)
		_ = netlink.LinkSetDown(link)
	}()
	n.claim(t, "uid-nic", "nic", driver.DeviceName(nic))
	_, err = k.Prepare(ctx, "default", "nic", "uid-nic")
	if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "192.0.2.7/24") {
		t.Errorf("a claim of the NIC in use: %v; want a refusal naming %s and 192.0.2.7/24", err, name)
	}
	if d, _ := pci.Get(nic); d.Driver != "e1000e" {
		t.Errorf("after the refused claim the NIC is on %q", d.Driver)
	}
	t.Logf("NIC in use: %v", err)
}

// sriov: a VF enabled on the SR-IOV nvme joins the slice as a device of
// its own with sriov=vf and its PF, and leaves it when the VFs are
// disabled. (QEMU 7.2's amd-iommu gives VFs created after boot no group:
// there the VF is not published, which is what the driver must do.)
func sriov(t *testing.T, n *node, pf string) {
	t.Helper()
	if err := pci.SetNumVFs(pf, 1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	pd, err := pci.Get(pf)
	if err != nil || len(pd.VirtFns) != 1 {
		t.Fatalf("PF %s after enabling a VF: %+v, %v", pf, pd, err)
	}
	vf := pd.VirtFns[0]
	var vd *pci.Device
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if vd, err = pci.Get(vf); err == nil && (vd.IOMMUGroup >= 0 || time.Now().After(end)) {
			break
		}
	}
	if vd.IOMMUGroup < 0 && os.Getenv("VFIOCTL_PROFILE") == "amd" {
		time.Sleep(300 * time.Millisecond) // three rescans
		kubelettest.WaitSlice(t, n.client, without(driver.DeviceName(vf)))
		t.Logf("VF %s has no IOMMU group under amd-iommu (QEMU 7.2): not published", vf)
	} else {
		slice := kubelettest.WaitSlice(t, n.client, with(driver.DeviceName(vf)))
		for _, d := range slice.Spec.Devices {
			switch d.Name {
			case driver.DeviceName(vf):
				if str(d.Attributes, driver.AttrSRIOV) != "vf" || str(d.Attributes, driver.AttrPhysFn) != pf {
					t.Errorf("VF %s: sriov %q physfn %q", vf, str(d.Attributes, driver.AttrSRIOV), str(d.Attributes, driver.AttrPhysFn))
				}
			case driver.DeviceName(pf):
				if str(d.Attributes, driver.AttrSRIOV) != "pf" {
					t.Errorf("PF %s: sriov %q", pf, str(d.Attributes, driver.AttrSRIOV))
				}
			}
		}
	}
	if err := pci.SetNumVFs(pf, 0, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	kubelettest.WaitSlice(t, n.client, without(driver.DeviceName(vf)))
}

// childEnv makes the test binary a driver process of its own (child): the
// restart the checkpoint must survive is a new process, not only a new
// Driver. Its API server is a fake clientset seeded with the node and the
// claims the parent wrote; its state, CDI and socket directories are the
// parent's.
const childEnv = "VFIOCTL_DRA_CHILD"

type childSpec struct {
	State, CDI, Registrar, Plugin string
	Selection                     driver.Selection
	Claims                        []*resourceapi.ResourceClaim
}

func child() int {
	var spec childSpec
	if err := json.Unmarshal([]byte(os.Getenv(childEnv)), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	objs := []runtime.Object{&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "guest", UID: "guest-uid"}}}
	for _, c := range spec.Claims {
		objs = append(objs, c)
	}
	d, err := driver.New(driver.Options{NodeName: "guest", Selection: spec.Selection, StateDir: spec.State, CDIDir: spec.CDI}, driver.SysfsHost{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := d.Serve(ctx, fake.NewSimpleClientset(objs...), 100*time.Millisecond,
		kubeletplugin.RegistrarDirectoryPath(spec.Registrar), kubeletplugin.PluginDataDirectoryPath(spec.Plugin)); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0
}

// serveChild runs the driver in a new process of this binary on the
// node's state and claims until the test ends, and registers with it.
func (n *node) serveChild(t *testing.T) (*kubelettest.Kubelet, context.Context) {
	t.Helper()
	reg, rmReg, err := kubelettest.ShortDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rmReg)
	plug, rmPlug, err := kubelettest.ShortDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rmPlug)
	claims, err := n.client.ResourceV1().ResourceClaims("default").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	spec := childSpec{State: n.state, CDI: n.cdiDir, Registrar: reg, Plugin: plug, Selection: n.sel}
	for i := range claims.Items {
		spec.Claims = append(spec.Claims, &claims.Items[i])
	}
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"="+string(b))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("the driver process (pid %d): %v", cmd.Process.Pid, err)
		}
	})
	k, err := kubelettest.Register(context.Background(), reg, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	t.Logf("the driver restarted as pid %d (this test is pid %d)", cmd.Process.Pid, os.Getpid())
	return k, context.Background()
}
