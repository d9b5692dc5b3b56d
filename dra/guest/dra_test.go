// Package guest runs the DRA driver against the real edus and nvme inside
// the e2e VM (hack/qemu): `go test ./tests/e2e` boots it. The API server is
// client-go's fake clientset in the test process; the kubelet is
// kubelettest on the driver's real unix sockets. On the host the tests
// skip; the driver's own tests cover the protocol there.
package guest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	if os.Getenv(frame.GuestEnv) == "" {
		fmt.Println("guest tests run inside the e2e VM: go test ./tests/e2e")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// setup finds the edus (given back to no driver, as at boot) and an nvme
// on the nvme driver, and the selection that picks exactly those.
func setup(t *testing.T) (edus []string, nvme string, sel driver.Selection) {
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
		case d.Vendor == 0x1b36 && d.Device == 0x0010 && d.Driver == "nvme" && len(d.VirtFns) == 0 && d.PhysFn == "" && nvme == "":
			nvme = d.Address
		}
	}
	if len(edus) < 2 || nvme == "" {
		t.Fatalf("want two edus and an nvme on its driver: edus %v, nvme %q", edus, nvme)
	}
	return edus, nvme, driver.Selection{IDs: [][2]uint16{{0x1234, 0x11e8}}, Addresses: []string{nvme}}
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
	edus, nvme, sel := setup(t)
	n := &node{client: fake.NewSimpleClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "guest", UID: "guest-uid"}}),
		state: t.TempDir(), cdiDir: t.TempDir(), sel: sel}
	all := append(slices.Clone(edus), nvme)
	cdev := slices.Contains(strings.Split(os.Getenv(qemu.OfferEnv), ","), "cdev")
	claimed := []string{driver.DeviceName(edus[0]), driver.DeviceName(nvme)}
	var prepared []string

	t.Run("publish and prepare", func(t *testing.T) {
		k, ctx := n.serve(t)
		slice := kubelettest.WaitSlice(t, n.client, func(s *resourceapi.ResourceSlice) bool { return len(s.Spec.Devices) == len(all) })
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
		kubelettest.WaitSlice(t, n.client, func(s *resourceapi.ResourceSlice) bool { return len(s.Spec.Devices) == len(all)-1 })
		if err := os.WriteFile("/sys/bus/pci/rescan", []byte("1"), 0); err != nil {
			t.Fatal(err)
		}
		back, err := pci.Get(edus[1])
		if err != nil {
			t.Fatalf("after the rescan: %v", err)
		}
		attach(t, back)
		kubelettest.WaitSlice(t, n.client, func(s *resourceapi.ResourceSlice) bool { return len(s.Spec.Devices) == len(all) })

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
		k, ctx := n.serve(t)
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
		kubelettest.WaitSlice(t, n.client, func(s *resourceapi.ResourceSlice) bool {
			i := slices.IndexFunc(s.Spec.Devices, func(d resourceapi.Device) bool { return d.Name == claimed[1] })
			return i >= 0 && str(s.Spec.Devices[i].Attributes, driver.AttrDriver) == "nvme"
		})
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
