package driver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"

	"github.com/vfioctl/vfioctl/cdi"
	"github.com/vfioctl/vfioctl/pci"
)

// fakeHost is a machine of a few functions: two edus alone in groups 3
// and 4, a NIC in use (group 5), a pair behind a bridge sharing group 9,
// a function with no group.
type fakeHost struct {
	mu       sync.Mutex // Serve rescans while the test and the gRPC handlers change it
	devs     map[string]*pci.Device
	groups   map[int]*pci.Group
	prev     map[string]string
	binds    []string
	restores []string
	specs    map[string][]string // kind -> addresses
	cdev     bool
	busy     map[string]bool // Restore refuses: a process holds it
}

func newFakeHost() *fakeHost {
	h := &fakeHost{devs: map[string]*pci.Device{}, groups: map[int]*pci.Group{}, prev: map[string]string{}, specs: map[string][]string{}, cdev: true, busy: map[string]bool{}}
	add := func(addr string, vendor, device uint16, class uint32, group int, driver string) {
		h.devs[addr] = &pci.Device{Address: addr, Vendor: vendor, Device: device, Class: class, IOMMUGroup: group, Driver: driver, NUMANode: -1}
		if group >= 0 {
			g := h.groups[group]
			if g == nil {
				g = &pci.Group{ID: group, Viable: true}
				h.groups[group] = g
			}
			g.Devices = append(g.Devices, addr)
		}
	}
	add("0000:00:03.0", 0x1234, 0x11e8, 0x00ff00, 3, "")
	add("0000:00:04.0", 0x1234, 0x11e8, 0x00ff00, 4, "")
	add("0000:01:00.0", 0x8086, 0x10d3, 0x020000, 5, "e1000e")
	add("0000:02:00.0", 0x1b36, 0x0001, 0x060400, 9, "") // the bridge
	add("0000:03:01.0", 0x1b36, 0x0005, 0x00ff00, 9, "")
	add("0000:03:02.0", 0x1b36, 0x0005, 0x00ff00, 9, "")
	add("0000:05:00.0", 0x1234, 0x11e8, 0x00ff00, -1, "")
	return h
}

func (h *fakeHost) Devices() ([]*pci.Device, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*pci.Device
	for _, d := range h.devs {
		c := *d
		out = append(out, &c)
	}
	slices.SortFunc(out, func(a, b *pci.Device) int { return strings.Compare(a.Address, b.Address) })
	return out, nil
}

func (h *fakeHost) Groups() (map[int]*pci.Group, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.groups, nil
}

func (h *fakeHost) Get(addr string) (*pci.Device, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	d, ok := h.devs[addr]
	if !ok {
		return nil, fmt.Errorf("pci: %s: %w", addr, pci.ErrNoDevice)
	}
	c := *d
	return &c, nil
}

func (h *fakeHost) Bind(addr string, o pci.BindOptions) ([]pci.Bound, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	d := h.devs[addr]
	if d.Driver == "e1000e" && !o.Force {
		return nil, &pci.UnsafeError{Address: addr, Reasons: []string{"network interface eth0 is up with addresses 10.0.2.15/24"}}
	}
	targets := []string{addr}
	if o.Group {
		targets = nil
		for _, a := range h.groups[d.IOMMUGroup].Devices {
			if h.devs[a].Class>>8 != 0x0604 {
				targets = append(targets, a)
			}
		}
	}
	var out []pci.Bound
	for _, a := range targets {
		h.prev[a] = h.devs[a].Driver
		h.devs[a].Driver = pci.VFIODriver
		h.binds = append(h.binds, a)
		out = append(out, pci.Bound{Address: a, Previous: h.prev[a], Owner: o.Owner})
	}
	return out, nil
}

func (h *fakeHost) Restore(addr string) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.busy[addr] {
		return "", &pci.BusyError{Address: addr, Holders: []pci.Holder{{PID: 42, Comm: "qemu-system-x86_64", Path: "/dev/vfio/9"}}}
	}
	h.devs[addr].Driver = h.prev[addr]
	h.restores = append(h.restores, addr)
	return h.prev[addr], nil
}

func (h *fakeHost) SetOwner(addr string, o pci.Owner) error { return nil }

func (h *fakeHost) WriteSpec(addrs []string, p cdi.Policy, kind, dir string) (map[string]string, string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if p == cdi.RequireIOMMUFD && !h.cdev {
		return nil, "", cdi.ErrNoIOMMUFD
	}
	h.specs[kind] = addrs
	names := map[string]string{}
	for _, a := range addrs {
		names[a] = cdi.Name(kind, a)
	}
	return names, "iommufd", nil
}

func (h *fakeHost) RemoveSpec(kind, dir string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.specs, kind)
	return nil
}

func (h *fakeHost) PCIeRoot(addr string) (string, error) { return "pci0000:00", nil }

func (h *fakeHost) CdevSupported() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cdev
}

// driver is addr's driver now; remove takes addr off the bus.
func (h *fakeHost) driver(addr string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.devs[addr].Driver
}

func (h *fakeHost) remove(addr string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.devs, addr)
}

func TestPublish(t *testing.T) {
	h := newFakeHost()
	devs, _ := h.Devices()
	sel := Selection{IDs: [][2]uint16{{0x1234, 0x11e8}, {0x1b36, 0x0005}}}
	pub, skipped := Publish(devs, sel, h.groups, h)
	var names []string
	for _, p := range pub {
		names = append(names, p.Name)
	}
	if want := []string{"group-9", "pci-0000-00-03-0", "pci-0000-00-04-0"}; !slices.Equal(names, want) {
		t.Fatalf("published %v, want %v", names, want)
	}
	if skipped["0000:05:00.0"] != "no IOMMU group" {
		t.Errorf("skipped: %v", skipped)
	}
	g := pub[0]
	if !slices.Equal(g.Addresses, []string{"0000:03:01.0", "0000:03:02.0"}) || *g.Device.Attributes[AttrMembers].StringValue != "0000:03:01.0,0000:03:02.0" || *g.Device.Attributes[AttrFunctions].IntValue != 2 {
		t.Errorf("the group device: %+v", g)
	}
	a := pub[1].Device.Attributes
	for k, want := range map[string]string{AttrAddress: "0000:00:03.0", AttrVendor: "1234", AttrDevice: "11e8", AttrClass: "00ff00", AttrSRIOV: "none", AttrDriver: "none", AttrPCIeRoot: "pci0000:00", AttrPCIBusID: "0000:00:03.0"} {
		if v := a[resourceapi.QualifiedName(k)].StringValue; v == nil || *v != want {
			t.Errorf("attribute %s = %v, want %q", k, v, want)
		}
	}
	if *a[AttrGroup].IntValue != 3 || !*a[AttrViable].BoolValue || !*a[AttrCdev].BoolValue {
		t.Errorf("attributes %v", a)
	}
	if _, ok := a[AttrNUMA]; ok {
		t.Error("numaNode published for a device without NUMA affinity")
	}
	// SR-IOV: a PF and its VF, each alone in its group.
	pf := &pci.Device{Address: "0000:04:00.0", Vendor: 0x1b36, Device: 0x0010, Class: 0x010802, IOMMUGroup: 20, TotalVFs: 2, VirtFns: []string{"0000:04:00.1"}, NUMANode: 0}
	vf := &pci.Device{Address: "0000:04:00.1", Vendor: 0x1b36, Device: 0x0010, Class: 0x010802, IOMMUGroup: 21, PhysFn: pf.Address, NUMANode: 0}
	sriov, _ := Publish([]*pci.Device{pf, vf}, Selection{Classes: []string{"0108"}}, map[int]*pci.Group{20: {ID: 20, Devices: []string{pf.Address}}, 21: {ID: 21, Devices: []string{vf.Address}}}, h)
	if len(sriov) != 2 || *sriov[0].Device.Attributes[AttrSRIOV].StringValue != "pf" || *sriov[1].Device.Attributes[AttrSRIOV].StringValue != "vf" ||
		*sriov[1].Device.Attributes[AttrPhysFn].StringValue != pf.Address || *sriov[1].Device.Attributes[AttrNUMA].IntValue != 0 {
		t.Errorf("SR-IOV devices: %+v", sriov)
	}
	// Groups read after the devices and changed in between (a panic here
	// once under virtio-iommu while TestDRA rebinds devices): group 3 now
	// holds another function. The device is left out, saying why, not
	// published from an empty member list.
	moved := maps.Clone(h.groups)
	moved[3] = &pci.Group{ID: 3, Devices: []string{"0000:00:09.0"}}
	pub, skipped = Publish(devs, sel, moved, h)
	if len(pub) != 2 || !strings.Contains(skipped["0000:00:03.0"], "IOMMU group 3 no longer holds it") {
		t.Errorf("a group changed between the reads: published %v, skipped %v", pub, skipped)
	}
	// One member of group 9 alone: the group is not published, and says why.
	pub, skipped = Publish(devs, Selection{Addresses: []string{"0000:03:01.0"}}, h.groups, h)
	if len(pub) != 0 || !strings.Contains(skipped["0000:03:01.0"], "also holds 0000:03:02.0") {
		t.Errorf("half a group: %v, %v", pub, skipped)
	}
}

func TestParseSelection(t *testing.T) {
	s, err := ParseSelection("1234:11e8, class=0108,addr=0000:00:03.0")
	if err != nil || len(s.IDs) != 1 || s.Classes[0] != "0108" || s.Addresses[0] != "0000:00:03.0" {
		t.Fatalf("%+v, %v", s, err)
	}
	nvme := &pci.Device{Class: 0x010802}
	if !s.Matches(nvme) || s.Matches(&pci.Device{Class: 0x020000}) {
		t.Error("class prefix match")
	}
	for _, bad := range []string{"", "1234", "zz:11e8", "class=1", "class=xyz", "addr=03.0:00"} {
		if _, err := ParseSelection(bad); err == nil {
			t.Errorf("ParseSelection(%q) accepted", bad)
		}
	}
}

func claim(uid, name string, devices []string, configs ...resourceapi.DeviceAllocationConfiguration) *resourceapi.ResourceClaim {
	c := &resourceapi.ResourceClaim{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID(uid)},
		Status: resourceapi.ResourceClaimStatus{Allocation: &resourceapi.AllocationResult{}}}
	for i, d := range devices {
		c.Status.Allocation.Devices.Results = append(c.Status.Allocation.Devices.Results, resourceapi.DeviceRequestAllocationResult{
			Request: fmt.Sprintf("vfio%d", i), Driver: DefaultName, Pool: "node1", Device: d})
	}
	c.Status.Allocation.Devices.Config = configs
	return c
}

func opaque(src resourceapi.AllocationConfigSource, params string) resourceapi.DeviceAllocationConfiguration {
	return resourceapi.DeviceAllocationConfiguration{Source: src, DeviceConfiguration: resourceapi.DeviceConfiguration{
		Opaque: &resourceapi.OpaqueDeviceConfiguration{Driver: DefaultName, Parameters: runtime.RawExtension{Raw: []byte(params)}}}}
}

func newDriver(t *testing.T, h Host, state string) *Driver {
	t.Helper()
	d, err := New(Options{NodeName: "node1", Selection: Selection{IDs: [][2]uint16{{0x1234, 0x11e8}, {0x1b36, 0x0005}, {0x8086, 0x10d3}}}, StateDir: state, CDIDir: t.TempDir()}, h)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func prepareOne(t *testing.T, d *Driver, c *resourceapi.ResourceClaim) kubeletplugin.PrepareResult {
	t.Helper()
	res, err := d.PrepareResourceClaims(context.Background(), []*resourceapi.ResourceClaim{c})
	if err != nil || len(res) != 1 {
		t.Fatalf("prepare: %v, %v", res, err)
	}
	return res[c.UID]
}

func unprepareOne(t *testing.T, d *Driver, uid string) error {
	t.Helper()
	res, err := d.UnprepareResourceClaims(context.Background(), []kubeletplugin.NamespacedObject{{UID: types.UID(uid)}})
	if err != nil || len(res) != 1 {
		t.Fatalf("unprepare: %v, %v", res, err)
	}
	return res[types.UID(uid)]
}

func TestPrepareUnprepare(t *testing.T) {
	h, state := newFakeHost(), t.TempDir()
	d := newDriver(t, h, state)
	c := claim("uid-1", "vm", []string{"pci-0000-00-03-0", "group-9"},
		opaque(resourceapi.AllocationConfigSourceClaim, `{"apiVersion":"vfio.vfioctl.dev/v1","kind":"Config","owner":"107:107"}`),
		opaque(resourceapi.AllocationConfigSourceClass, `{"apiVersion":"vfio.vfioctl.dev/v1","kind":"Config","backend":"legacy","owner":"1:1"}`))
	r := prepareOne(t, d, c)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	kind := "vfio.vfioctl.dev/claim-uid-1"
	if len(r.Devices) != 2 || !slices.Equal(r.Devices[0].CDIDeviceIDs, []string{cdi.Name(kind, "0000:00:03.0")}) || len(r.Devices[1].CDIDeviceIDs) != 2 || r.Devices[1].Requests[0] != "vfio1" {
		t.Errorf("prepare result: %+v", r.Devices)
	}
	if !slices.Equal(h.binds, []string{"0000:00:03.0", "0000:03:01.0", "0000:03:02.0"}) || len(h.specs[kind]) != 3 {
		t.Errorf("bound %v, spec %v", h.binds, h.specs)
	}
	cp, err := d.loadCheckpoint("uid-1")
	if err != nil || cp.Owner == nil || cp.Owner.UID != 107 {
		t.Errorf("checkpoint: %+v, %v (the claim's owner must win over the class's)", cp, err)
	}

	// A restarted plugin (a new Driver on the same state) asked again:
	// the same answer, nothing bound twice.
	d2 := newDriver(t, h, state)
	if r2 := prepareOne(t, d2, c); r2.Err != nil || fmt.Sprint(r2.Devices) != fmt.Sprint(r.Devices) || len(h.binds) != 3 {
		t.Errorf("repeated prepare: %+v (binds %v)", r2, h.binds)
	}
	// Another claim for a device this one holds is refused.
	if r3 := prepareOne(t, d2, claim("uid-2", "other", []string{"pci-0000-00-03-0"})); r3.Err == nil || !strings.Contains(r3.Err.Error(), "prepared for claim default/vm") {
		t.Errorf("a second claim on the device: %v", r3.Err)
	}
	// Unprepare while a VMM still holds a device: refused, the checkpoint
	// kept; then done.
	h.busy["0000:03:02.0"] = true
	if err := unprepareOne(t, d2, "uid-1"); err == nil || !strings.Contains(err.Error(), "qemu-system-x86_64") {
		t.Errorf("unprepare of a held device: %v", err)
	}
	delete(h.busy, "0000:03:02.0")
	if err := unprepareOne(t, d2, "uid-1"); err != nil {
		t.Fatal(err)
	}
	if h.devs["0000:00:03.0"].Driver != "" || len(h.specs) != 0 {
		t.Errorf("after unprepare: driver %q, specs %v", h.devs["0000:00:03.0"].Driver, h.specs)
	}
	if err := unprepareOne(t, d2, "uid-1"); err != nil {
		t.Errorf("unprepare of a claim not prepared: %v", err)
	}
}

func TestPrepareRefusals(t *testing.T) {
	h := newFakeHost()
	d := newDriver(t, h, t.TempDir())
	for _, tc := range []struct {
		name  string
		claim *resourceapi.ResourceClaim
		want  string
	}{
		{"NIC in use", claim("u1", "nic", []string{"pci-0000-01-00-0"}), "eth0 is up"},
		{"bad config", claim("u2", "bad", []string{"pci-0000-00-04-0"}, opaque(resourceapi.AllocationConfigSourceClaim, `{"apiVersion":"vfio.vfioctl.dev/v1","kind":"Config","backend":"fastest"}`)), "ResourceClaim's configuration"},
		{"unknown field", claim("u3", "bad", []string{"pci-0000-00-04-0"}, opaque(resourceapi.AllocationConfigSourceClass, `{"apiVersion":"vfio.vfioctl.dev/v1","kind":"Config","backends":"legacy"}`)), "unknown field"},
		{"wrong kind", claim("u4", "bad", []string{"pci-0000-00-04-0"}, opaque(resourceapi.AllocationConfigSourceClass, `{"apiVersion":"v1","kind":"Pod"}`)), "want vfio.vfioctl.dev/v1 Config"},
		{"gone device", claim("u5", "gone", []string{"pci-0000-00-09-0"}), "not published on this node"},
	} {
		r := prepareOne(t, d, tc.claim)
		if r.Err == nil || !strings.Contains(r.Err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, r.Err, tc.want)
		}
	}
	if len(h.binds) != 0 {
		t.Errorf("refused claims bound %v", h.binds)
	}
	// A claim with no device of this driver: nothing bound, no spec.
	other := claim("u7", "gpu", []string{"gpu-0"})
	other.Status.Allocation.Devices.Results[0].Driver = "gpu.example.com"
	if r := prepareOne(t, d, other); r.Err != nil || len(r.Devices) != 0 || len(h.specs) != 0 {
		t.Errorf("a claim of another driver's device: %+v, specs %v", r, h.specs)
	}
	// require-iommufd where the kernel has no cdev: the bind is undone.
	h.cdev = false
	r := prepareOne(t, d, claim("u6", "vm", []string{"pci-0000-00-04-0"}, opaque(resourceapi.AllocationConfigSourceClaim, `{"apiVersion":"vfio.vfioctl.dev/v1","kind":"Config","backend":"require-iommufd"}`)))
	if !errors.Is(r.Err, cdi.ErrNoIOMMUFD) || h.devs["0000:00:04.0"].Driver != "" {
		t.Errorf("require-iommufd without cdev: %v, driver %q", r.Err, h.devs["0000:00:04.0"].Driver)
	}
}

// A checkpoint whose devices changed underneath is reported, not trusted.
func TestCheckpointNotTrusted(t *testing.T) {
	h, state := newFakeHost(), t.TempDir()
	d := newDriver(t, h, state)
	c := claim("u1", "vm", []string{"pci-0000-00-03-0"})
	if r := prepareOne(t, d, c); r.Err != nil {
		t.Fatal(r.Err)
	}
	h.devs["0000:00:03.0"].Driver = "edu-host-driver" // rebound by someone else
	if r := prepareOne(t, newDriver(t, h, state), c); r.Err == nil || !strings.Contains(r.Err.Error(), "on edu-host-driver now") {
		t.Errorf("prepare over a changed checkpoint: %v", r.Err)
	}
	// Unprepare leaves the other driver's device alone and forgets the claim.
	if err := unprepareOne(t, d, "u1"); err != nil || len(h.restores) != 0 {
		t.Errorf("unprepare of a rebound device: %v, restores %v", err, h.restores)
	}
}
