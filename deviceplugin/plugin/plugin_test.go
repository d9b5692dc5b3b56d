package plugin

import (
	"context"
	"errors"
	"os"
	"reflect"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	api "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/vfioctl/vfioctl/cdi"
	"github.com/vfioctl/vfioctl/deviceplugin/internal/kubelettest"
)

// fakeSource is a Source whose devices the test sets.
type fakeSource struct {
	mu   sync.Mutex
	devs []State
}

func (f *fakeSource) Scan() ([]State, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]State(nil), f.devs...), nil
}

func (f *fakeSource) set(devs ...State) { f.mu.Lock(); f.devs = devs; f.mu.Unlock() }

const devA, devB = "0000:00:05.0", "0000:00:06.0"

// TestPluginWithFakeKubelet drives the plugin through the kubelet's API
// over real unix sockets: registration, ListAndWatch, Allocate, health
// changes, a kubelet restart and shutdown. Device nodes are stand-ins
// (/dev/null and friends); the guest test serves real VFIO devices.
func TestPluginWithFakeKubelet(t *testing.T) {
	dir, cdiDir := t.TempDir(), t.TempDir()
	k := kubelettest.Start(t, dir)
	src := &fakeSource{}
	src.set(State{Address: devA, Healthy: true, NUMA: 0}, State{Address: devB, Healthy: true, NUMA: -1})
	var policyErr error
	var mu sync.Mutex
	nodes := func(addrs []string, p cdi.Policy) (*cdi.NodeSet, error) {
		mu.Lock()
		defer mu.Unlock()
		if policyErr != nil {
			return nil, policyErr
		}
		ns := &cdi.NodeSet{Backend: cdi.BackendIOMMUFD, Shared: []string{"/dev/null"}}
		for _, a := range addrs {
			n := map[string]string{devA: "/dev/zero", devB: "/dev/full"}[a]
			ns.Devices = append(ns.Devices, cdi.Device{Address: a, Nodes: []string{n}})
		}
		return ns, nil
	}
	res, _ := ParseResource("vfioctl.dev/edu=1234:11e8")
	p := &Plugin{Resource: res, Source: src, Nodes: nodes, CDIDir: cdiDir, Dir: dir, Interval: 20 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	r := k.Registration()
	if r.Version != "v1beta1" || r.ResourceName != "vfioctl.dev/edu" || r.Endpoint != "vfioctl-vfioctl_dev_edu.sock" {
		t.Fatalf("registration %+v", r)
	}
	devs := k.WaitFor(map[string]string{devA: api.Healthy, devB: api.Healthy})
	for _, d := range devs {
		if d.ID == devA && (d.Topology == nil || d.Topology.Nodes[0].ID != 0) || d.ID == devB && d.Topology != nil {
			t.Errorf("topology of %s: %v", d.ID, d.Topology)
		}
	}

	resp, err := k.Allocate(devB, devA)
	if err != nil {
		t.Fatal(err)
	}
	c := resp.ContainerResponses[0]
	var paths []string
	for _, d := range c.Devices {
		paths = append(paths, d.HostPath)
		if d.ContainerPath != d.HostPath || d.Permissions != "rw" {
			t.Errorf("device spec %+v", d)
		}
	}
	if !reflect.DeepEqual(paths, []string{"/dev/null", "/dev/zero", "/dev/full"}) {
		t.Errorf("allocated nodes %v", paths)
	}
	if c.Envs["PCI_RESOURCE_VFIOCTL_DEV_EDU"] != devA+","+devB || c.Envs["VFIOCTL_BACKEND"] != "iommufd" {
		t.Errorf("envs %v", c.Envs)
	}
	if len(c.CdiDevices) != 2 || c.CdiDevices[0].Name != "vfioctl.dev/edu="+devA || c.CdiDevices[1].Name != "vfioctl.dev/edu="+devB {
		t.Errorf("CDI devices %v", c.CdiDevices)
	}
	// The CDI names resolve: the plugin keeps the spec written.
	pub, errs := cdi.List(cdiDir)
	if len(pub) != 2 || pub[0].Name != "vfioctl.dev/edu="+devA || len(errs) != 0 {
		t.Errorf("CDI spec in %s: %+v %v", cdiDir, pub, errs)
	}

	// devB is unbound: it turns Unhealthy and cannot be allocated.
	src.set(State{Address: devA, Healthy: true, NUMA: 0}, State{Address: devB, Why: "bound to e1000e", NUMA: -1})
	k.WaitFor(map[string]string{devA: api.Healthy, devB: api.Unhealthy})
	if _, err := k.Allocate(devB); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("allocating an unhealthy device: %v", err)
	}
	if _, err := k.Allocate("0000:00:09.0"); status.Code(err) != codes.InvalidArgument {
		t.Errorf("allocating an unknown device: %v", err)
	}
	if pub, _ := cdi.List(cdiDir); len(pub) != 1 {
		t.Errorf("the CDI spec still names the unhealthy device: %+v", pub)
	}

	// A policy that cannot serve the set makes every device Unhealthy.
	mu.Lock()
	policyErr = errors.New("iommufd cannot serve these devices")
	mu.Unlock()
	k.WaitFor(map[string]string{devA: api.Unhealthy, devB: api.Unhealthy})
	if pub, _ := cdi.List(cdiDir); len(pub) != 0 {
		t.Errorf("with no healthy device the CDI spec is left: %+v", pub)
	}
	mu.Lock()
	policyErr = nil
	mu.Unlock()
	k.WaitFor(map[string]string{devA: api.Healthy, devB: api.Unhealthy})

	// The kubelet restarts: the plugin registers again and serves.
	k = k.Restart()
	if r := k.Registration(); r.ResourceName != "vfioctl.dev/edu" {
		t.Fatalf("re-registration %+v", r)
	}
	k.WaitFor(map[string]string{devA: api.Healthy, devB: api.Unhealthy})
	if _, err := k.Allocate(devA); err != nil {
		t.Errorf("allocate after the restart: %v", err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if _, err := os.Stat(p.Socket()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the socket is left behind: %v", err)
	}
	k.Stop()
}

func TestParseResource(t *testing.T) {
	r, err := ParseResource("example.com/nic=8086:10D3,8086:1521")
	if err != nil {
		t.Fatal(err)
	}
	if r.Name != "example.com/nic" || len(r.Selectors) != 2 || !r.Matches(0x8086, 0x1521) || r.Matches(0x8086, 0x1522) {
		t.Errorf("%+v", r)
	}
	if r.EnvName() != "PCI_RESOURCE_EXAMPLE_COM_NIC" || r.CDIKind() != "example.com/nic" {
		t.Errorf("env %s kind %s", r.EnvName(), r.CDIKind())
	}
	if r, _ := ParseResource("example.com/100g.nic=8086:1521"); r.CDIKind() != "example.com/pci-100g_nic" {
		t.Errorf("CDI kind of %s: %s", r.Name, r.CDIKind())
	}
	for _, bad := range []string{"", "nic=8086:10d3", "example.com/nic", "example.com/nic=", "example.com/nic=8086", "example.com/nic=808:10d3",
		"example.com/nic=zzzz:10d3", "example.com/a/b=8086:10d3", "example.com/n c=8086:10d3"} {
		if _, err := ParseResource(bad); err == nil {
			t.Errorf("ParseResource(%q) accepted", bad)
		}
	}
}
