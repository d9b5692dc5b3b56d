package driver

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	dracel "k8s.io/dynamic-resource-allocation/cel"

	"github.com/vfioctl/vfioctl/pci"
)

// manifests decodes every document of docs/dra/*.yaml strictly with the
// API server's own types (an unknown or misspelt field fails).
func manifests(t *testing.T) []runtime.Object {
	t.Helper()
	files, err := filepath.Glob("../../docs/dra/*.yaml")
	if err != nil || len(files) < 4 {
		t.Fatalf("docs/dra has %v (%v)", files, err)
	}
	dec := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	var out []runtime.Object
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
		for {
			doc, err := r.Read()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			obj, _, err := dec.Decode(doc, nil, nil)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			out = append(out, obj)
		}
	}
	return out
}

// TestManifests: the docs' DeviceClasses, claim template, pod and
// DaemonSet are valid API objects; their configurations parse as this
// driver parses them; and their CEL selectors, compiled with the
// scheduler's DRA CEL environment, pick the devices this driver publishes
// (an NVMe drive and a NIC on one root complex) and nothing else.
func TestManifests(t *testing.T) {
	kinds := map[string]int{}
	nvme := &pci.Device{Address: "0000:02:00.0", Vendor: 0x1b36, Device: 0x0010, Class: 0x010802, IOMMUGroup: 2, NUMANode: 0}
	nic := &pci.Device{Address: "0000:01:00.0", Vendor: 0x8086, Device: 0x10d3, Class: 0x020000, IOMMUGroup: 1, NUMANode: 0}
	edu := &pci.Device{Address: "0000:00:03.0", Vendor: 0x1234, Device: 0x11e8, Class: 0x00ff00, IOMMUGroup: 3, NUMANode: -1}
	h := newFakeHost()
	groups := map[int]*pci.Group{1: {ID: 1, Devices: []string{nic.Address}, Viable: true}, 2: {ID: 2, Devices: []string{nvme.Address}, Viable: true}, 3: {ID: 3, Devices: []string{edu.Address}, Viable: true}}
	pub, _ := Publish([]*pci.Device{nvme, nic, edu}, Selection{Classes: []string{"0108", "02", "00"}}, groups, h)
	device := func(name string) dracel.Device {
		for _, p := range pub {
			if p.Name == name {
				return dracel.Device{Driver: DefaultName, Attributes: p.Device.Attributes}
			}
		}
		t.Fatalf("%s not published", name)
		return dracel.Device{}
	}
	matches := func(expr string, d dracel.Device) bool {
		t.Helper()
		c := dracel.GetCompiler(dracel.Features{}).CompileCELExpression(expr, dracel.Options{})
		if c.Error != nil {
			t.Fatalf("CEL %q: %v", expr, c.Error)
		}
		ok, _, err := c.DeviceMatches(context.Background(), d)
		if err != nil {
			t.Fatalf("CEL %q on %v: %v", expr, d.Attributes, err)
		}
		return ok
	}
	nvmeDev, nicDev, eduDev := device(DeviceName(nvme.Address)), device(DeviceName(nic.Address)), device(DeviceName(edu.Address))
	for _, obj := range manifests(t) {
		switch o := obj.(type) {
		case *resourceapi.DeviceClass:
			kinds["DeviceClass"]++
			for _, s := range o.Spec.Selectors {
				if !matches(s.CEL.Expression, eduDev) || matches(s.CEL.Expression, dracel.Device{Driver: "gpu.example.com", Attributes: eduDev.Attributes}) {
					t.Errorf("DeviceClass %s selects by driver wrongly: %s", o.Name, s.CEL.Expression)
				}
			}
			for _, c := range o.Spec.Config {
				var cfg Config
				if c.Opaque == nil || c.Opaque.Driver != DefaultName || cfg.apply(c.Opaque.Parameters.Raw) != nil {
					t.Errorf("DeviceClass %s config: %+v", o.Name, c)
				}
			}
		case *resourceapi.ResourceClaimTemplate:
			kinds["ResourceClaimTemplate"]++
			reqs := o.Spec.Spec.Devices.Requests
			if len(reqs) != 2 {
				t.Fatalf("template requests: %+v", reqs)
			}
			want := map[string][2]bool{"nvme": {true, false}, "nic": {false, true}}
			for _, r := range reqs {
				e := r.Exactly.Selectors[0].CEL.Expression
				if got := [2]bool{matches(e, nvmeDev), matches(e, nicDev)}; got != want[r.Name] || matches(e, eduDev) {
					t.Errorf("request %s (%s) picks nvme, nic = %v, want %v, and never edu", r.Name, e, got, want[r.Name])
				}
			}
			for _, c := range o.Spec.Spec.Devices.Config {
				var cfg Config
				if err := cfg.apply(c.Opaque.Parameters.Raw); err != nil || cfg.Owner == nil || cfg.Policy != "require-iommufd" {
					t.Errorf("template config: %+v, %v", cfg, err)
				}
			}
			if a := o.Spec.Spec.Devices.Constraints[0].MatchAttribute; a == nil || string(*a) != AttrPCIeRoot {
				t.Errorf("constraint on %v, want %s", a, AttrPCIeRoot)
			}
		case *corev1.Pod:
			kinds["Pod"]++
			if len(o.Spec.ResourceClaims) != 1 || o.Spec.Containers[0].Resources.Claims[0].Name != o.Spec.ResourceClaims[0].Name {
				t.Errorf("pod claims: %+v", o.Spec)
			}
		case *appsv1.DaemonSet:
			kinds["DaemonSet"]++
			args := strings.Join(o.Spec.Template.Spec.Containers[0].Args, " ")
			if _, err := ParseSelection(strings.Fields(args)[1]); err != nil {
				t.Errorf("DaemonSet --select: %v", err)
			}
		case *rbacv1.ClusterRole:
			kinds["ClusterRole"]++
			found := false
			for _, r := range o.Rules {
				found = found || (len(r.Resources) > 0 && r.Resources[0] == "resourceslices" && strings.Contains(strings.Join(r.Verbs, ","), "create"))
			}
			if !found {
				t.Error("the ClusterRole does not let the driver write ResourceSlices")
			}
		default:
			kinds[obj.GetObjectKind().GroupVersionKind().Kind]++
		}
	}
	for _, k := range []string{"DeviceClass", "ResourceClaimTemplate", "Pod", "DaemonSet", "ClusterRole"} {
		if kinds[k] == 0 {
			t.Errorf("docs/dra has no %s (has %v)", k, kinds)
		}
	}
}
