package cdi

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	oci "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/vfioctl/vfioctl/vfio"
	cdiapi "tags.cncf.io/container-device-interface/pkg/cdi"
)

var cdevOK = vfio.Offer{Backend: vfio.Cdev, OK: true}
var edu = candidate{address: "0000:00:05.0", group: "/dev/vfio/7", cdev: "/dev/vfio/devices/vfio0", groupID: 7, cdevOffer: cdevOK}
var nic = candidate{address: "0000:01:00.0", group: "/dev/vfio/9", cdev: "/dev/vfio/devices/vfio1", groupID: 9, cdevOffer: cdevOK}

func haveAll(string) bool { return true }

func TestChoosePolicies(t *testing.T) {
	noCdev := nic
	noCdev.cdev = ""
	noCdev.cdevOffer = vfio.Offer{Backend: vfio.Cdev, Why: "has no VFIO cdev"}
	noIOMMU := edu
	noIOMMU.cdevOffer = vfio.Offer{Backend: vfio.Cdev, Why: "no /dev/iommu: the kernel lacks CONFIG_IOMMUFD (Linux 6.2)"}
	for _, tc := range []struct {
		name    string
		cs      []candidate
		p       Policy
		have    func(string) bool
		backend string
		nodes   []string // each device's node, in order
		err     string
	}{
		{"prefer, all have cdevs", []candidate{edu, nic}, PreferIOMMUFD, haveAll, BackendIOMMUFD, []string{edu.cdev, nic.cdev}, ""},
		{"prefer, one lacks a cdev: legacy for all", []candidate{edu, noCdev}, PreferIOMMUFD, haveAll, BackendLegacy, []string{edu.group, nic.group}, ""},
		{"prefer, no /dev/iommu", []candidate{noIOMMU}, PreferIOMMUFD, haveAll, BackendLegacy, []string{edu.group}, ""},
		{"legacy even with cdevs", []candidate{edu, nic}, Legacy, haveAll, BackendLegacy, []string{edu.group, nic.group}, ""},
		{"require, all have cdevs", []candidate{edu}, RequireIOMMUFD, haveAll, BackendIOMMUFD, []string{edu.cdev}, ""},
		{"require, one lacks a cdev", []candidate{edu, noCdev}, RequireIOMMUFD, haveAll, "", nil, "0000:01:00.0: has no VFIO cdev"},
		{"require, no /dev/iommu", []candidate{noIOMMU}, RequireIOMMUFD, haveAll, "", nil, "no /dev/iommu"},
		{"legacy without the container node", []candidate{edu}, Legacy, func(p string) bool { return p != ContainerNode }, "", nil, "/dev/vfio/vfio does not exist"},
		{"legacy, group node missing", []candidate{edu}, Legacy, func(p string) bool { return p != edu.group }, "", nil, "group node \"/dev/vfio/7\" does not exist"},
		{"no devices", nil, Legacy, haveAll, "", nil, "no devices"},
		{"unknown policy", []candidate{edu}, "both", haveAll, "", nil, "unknown backend policy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns, err := choose(tc.cs, tc.p, tc.have)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one saying %q", err, tc.err)
				}
				if tc.p == RequireIOMMUFD && !errors.Is(err, ErrNoIOMMUFD) {
					t.Errorf("%v is not ErrNoIOMMUFD", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ns.Backend != tc.backend {
				t.Errorf("backend %s, want %s", ns.Backend, tc.backend)
			}
			wantShared := ContainerNode
			if tc.backend == BackendIOMMUFD {
				wantShared = IOMMUFDNode
			}
			if !reflect.DeepEqual(ns.Shared, []string{wantShared}) {
				t.Errorf("shared %v, want [%s]", ns.Shared, wantShared)
			}
			var got []string
			for _, d := range ns.Devices {
				got = append(got, d.Nodes...)
			}
			if !reflect.DeepEqual(got, tc.nodes) {
				t.Errorf("nodes %v, want %v", got, tc.nodes)
			}
		})
	}
}

// The backend a NodeSet names is a word vfio.ParseBackend (and so
// vfioctl --backend) reads, naming the backend whose nodes it lists.
func TestBackendWords(t *testing.T) {
	for word, want := range map[string]vfio.Backend{BackendLegacy: vfio.Legacy, BackendIOMMUFD: vfio.Cdev} {
		if got, err := vfio.ParseBackend(word); err != nil || got != want {
			t.Errorf("vfio.ParseBackend(%q) = %v, %v; want %v", word, got, err, want)
		}
	}
}

func TestParsePolicy(t *testing.T) {
	for in, want := range map[string]Policy{"": PreferIOMMUFD, "legacy": Legacy, "require-iommufd": RequireIOMMUFD} {
		if p, err := ParsePolicy(in); err != nil || p != want {
			t.Errorf("ParsePolicy(%q) = %q, %v", in, p, err)
		}
	}
	if _, err := ParsePolicy("iommufd"); err == nil || !strings.Contains(err.Error(), "prefer-iommufd, legacy, require-iommufd") {
		t.Errorf("ParsePolicy(iommufd): %v", err)
	}
}

// TestSpecRoundTrip writes a spec with the CDI library, reads it back,
// and injects a device into an OCI spec as a runtime does: the container
// gets the shared node and the device's, with the host's major and minor.
// Stand-in character devices (/dev/null, /dev/zero) take the place of the
// VFIO nodes, which the host has none of; the guest test uses real ones.
func TestSpecRoundTrip(t *testing.T) {
	ns := &NodeSet{Backend: BackendIOMMUFD, Shared: []string{"/dev/null"},
		Devices: []Device{{Address: "0000:01:00.0", Group: 9, Nodes: []string{"/dev/zero"}}, {Address: "0000:00:05.0", Group: 7, Nodes: []string{"/dev/full"}}}}
	spec, err := Spec(ns, "")
	if err != nil {
		t.Fatal(err)
	}
	if spec.Kind != DefaultKind || spec.Devices[0].Name != "0000:00:05.0" || spec.Annotations[AnnotationBackend] != BackendIOMMUFD {
		t.Errorf("spec: kind %s, first device %s, annotations %v", spec.Kind, spec.Devices[0].Name, spec.Annotations)
	}
	dir := t.TempDir()
	path, err := Write(spec, dir)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(path) != dir {
		t.Errorf("written to %s, not in %s", path, dir)
	}
	pub, errs := List(dir)
	if len(errs) != 0 {
		t.Fatalf("the CDI library reports errors: %v", errs)
	}
	want := []Published{
		{Name: "vfioctl.dev/pci=0000:00:05.0", Spec: path, Nodes: []string{"/dev/null", "/dev/full"}},
		{Name: "vfioctl.dev/pci=0000:01:00.0", Spec: path, Nodes: []string{"/dev/null", "/dev/zero"}},
	}
	if !reflect.DeepEqual(pub, want) {
		t.Errorf("List:\n got %+v\nwant %+v", pub, want)
	}
	if n := Name(DefaultKind, "0000:01:00.0"); n != want[1].Name {
		t.Errorf("Name = %s", n)
	}
	cache, _ := cdiapi.NewCache(cdiapi.WithSpecDirs(dir), cdiapi.WithAutoRefresh(false))
	o := &oci.Spec{Linux: &oci.Linux{}}
	if unresolved, err := cache.InjectDevices(o, want[1].Name); err != nil {
		t.Fatalf("inject: %v (unresolved %v)", err, unresolved)
	}
	var got []string
	for _, d := range o.Linux.Devices {
		got = append(got, d.Path)
		if _, err := os.Stat(d.Path); err != nil || d.Major == 0 && d.Minor == 0 {
			t.Errorf("injected %s: major %d minor %d (%v)", d.Path, d.Major, d.Minor, err)
		}
	}
	if !reflect.DeepEqual(got, []string{"/dev/null", "/dev/zero"}) {
		t.Errorf("injected nodes %v", got)
	}
	// Writing again replaces the spec, it does not add a second one.
	if _, err := Write(spec, dir); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("%d files after writing twice", len(ents))
	}
	if err := Remove(DefaultKind, dir); err != nil {
		t.Fatal(err)
	}
	if pub, _ := List(dir); len(pub) != 0 {
		t.Errorf("after Remove: %+v", pub)
	}
	if err := Remove(DefaultKind, dir); err != nil {
		t.Errorf("Remove of nothing: %v", err)
	}
	// A spec the library rejects is not written.
	bad, _ := Spec(ns, "")
	bad.Devices[0].Name = "bad/name"
	if _, err := Write(bad, t.TempDir()); err == nil {
		t.Error("an invalid device name was written")
	}
	if _, err := Spec(ns, "not a kind"); err == nil {
		t.Error("an invalid kind was accepted")
	}
}
