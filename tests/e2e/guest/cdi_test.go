package guest

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	oci "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	cdiapi "tags.cncf.io/container-device-interface/pkg/cdi"

	"github.com/vfioctl/vfioctl/cdi"
	"github.com/vfioctl/vfioctl/pci"
)

// TestCDIGenerate: `vfioctl cdi generate` under each backend policy writes
// a spec that the CDI library loads; injected into an OCI spec, as a
// runtime does, every device gives the nodes of one backend, each of which
// exists with the device numbers the CDI spec carries and opens. The
// policy's choice follows the kernel: iommufd where every device has a
// cdev, and require-iommufd fails (exit 4) where not. `cdi list` shows the
// same devices; a device not on vfio-pci is refused (exit 6).
func TestCDIGenerate(t *testing.T) {
	addrs := eduAddrs(t)
	d0, err := pci.Get(addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	_, iommuErr := os.Stat(cdi.IOMMUFDNode)
	iommufd := iommuErr == nil && d0.VFIOCdev != ""
	for _, p := range cdi.Policies {
		t.Run(string(p), func(t *testing.T) {
			dir := t.TempDir()
			args := append([]string{"cdi", "generate", "--policy", string(p), "--dir", dir, "--json"}, addrs...)
			if p == cdi.RequireIOMMUFD && !iommufd {
				out := mustExit(t, 4, args...) // not supported
				if !strings.Contains(out, "iommufd cannot serve") {
					t.Errorf("require-iommufd without cdevs:\n%s", out)
				}
				return
			}
			var gen struct {
				Path    string   `json:"path"`
				Backend string   `json:"backend"`
				Shared  []string `json:"shared_nodes"`
				Devices []struct {
					Name  string   `json:"name"`
					Nodes []string `json:"nodes"`
				} `json:"devices"`
			}
			if err := json.Unmarshal([]byte(mustExit(t, 0, args...)), &gen); err != nil {
				t.Fatal(err)
			}
			want := cdi.BackendLegacy
			if p != cdi.Legacy && iommufd {
				want = cdi.BackendIOMMUFD
			}
			if gen.Backend != want || len(gen.Devices) != len(addrs) {
				t.Fatalf("generated %+v, want backend %s for %d devices", gen, want, len(addrs))
			}
			cache, _ := cdiapi.NewCache(cdiapi.WithSpecDirs(dir), cdiapi.WithAutoRefresh(false))
			if errs := cache.GetErrors(); len(errs) > 0 {
				t.Fatalf("the CDI library rejects %s: %v", gen.Path, errs)
			}
			for i, a := range addrs {
				name := "vfioctl.dev/pci=" + a
				if gen.Devices[i].Name != name {
					t.Errorf("device %d named %s, want %s", i, gen.Devices[i].Name, name)
				}
				spec := &oci.Spec{Linux: &oci.Linux{}}
				if _, err := cache.InjectDevices(spec, name); err != nil {
					t.Fatalf("inject %s: %v", name, err)
				}
				d, _ := pci.Get(a)
				wantNodes := []string{cdi.ContainerNode, d.VFIOGroup}
				if want == cdi.BackendIOMMUFD {
					wantNodes = []string{cdi.IOMMUFDNode, d.VFIOCdev}
				}
				var got []string
				for _, n := range spec.Linux.Devices {
					got = append(got, n.Path)
					var st unix.Stat_t
					if err := unix.Stat(n.Path, &st); err != nil {
						t.Fatal(err)
					}
					if n.Major != int64(unix.Major(st.Rdev)) || n.Minor != int64(unix.Minor(st.Rdev)) {
						t.Errorf("%s injected as %d:%d, the node is %d:%d", n.Path, n.Major, n.Minor, unix.Major(st.Rdev), unix.Minor(st.Rdev))
					}
					f, err := os.OpenFile(n.Path, os.O_RDWR, 0)
					if err != nil {
						t.Errorf("open %s: %v", n.Path, err)
						continue
					}
					f.Close()
				}
				if strings.Join(got, " ") != strings.Join(wantNodes, " ") {
					t.Errorf("%s: injected %v, want %v", name, got, wantNodes)
				}
			}
			var listed struct {
				Devices []cdi.Published `json:"devices"`
				Errors  []any           `json:"errors"`
			}
			if err := json.Unmarshal([]byte(mustExit(t, 0, "cdi", "list", "--dir", dir, "--json")), &listed); err != nil {
				t.Fatal(err)
			}
			if len(listed.Devices) != len(addrs) || len(listed.Errors) != 0 || listed.Devices[0].Spec != gen.Path {
				t.Errorf("cdi list: %+v", listed)
			}
			t.Logf("%s: backend %s, %s", p, gen.Backend, gen.Path)
		})
	}
	if EdusOnly {
		return // no NIC in this guest
	}
	nic := findDevice(t, wantDevices["e1000e"])
	if d, _ := pci.Get(nic); d.Driver != pci.VFIODriver {
		out := mustExit(t, 6, "cdi", "generate", "--dir", t.TempDir(), nic)
		if !strings.Contains(out, "not bound to vfio-pci") {
			t.Errorf("generate for a device on %s:\n%s", d.Driver, out)
		}
	}
}
