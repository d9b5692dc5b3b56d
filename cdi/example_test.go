package cdi_test

import (
	"fmt"

	"github.com/vfioctl/vfioctl/cdi"
)

// A node set for two devices on the iommufd backend, as cdi.Nodes chooses
// it on a Linux 6.6+ host, turned into the spec a runtime reads. On a real
// host: spec, _, err := cdi.Generate(nil, cdi.PreferIOMMUFD, "") and
// cdi.Write(spec, "/var/run/cdi").
func ExampleSpec() {
	ns := &cdi.NodeSet{
		Backend: cdi.BackendIOMMUFD,
		Shared:  []string{cdi.IOMMUFDNode},
		Devices: []cdi.Device{
			{Address: "0000:00:05.0", Group: 7, Nodes: []string{"/dev/vfio/devices/vfio0"}},
			{Address: "0000:01:00.0", Group: 9, Nodes: []string{"/dev/vfio/devices/vfio1"}},
		},
	}
	spec, err := cdi.Spec(ns, "")
	if err != nil {
		fmt.Println(err)
		return
	}
	y, _ := cdi.YAML(spec)
	fmt.Print(string(y))
	fmt.Println(cdi.Name(spec.Kind, "0000:01:00.0"))
	// Output:
	// ---
	// cdiVersion: 0.6.0
	// kind: vfioctl.dev/pci
	// annotations:
	//     vfioctl.dev/backend: iommufd
	// devices:
	//     - name: "0000:00:05.0"
	//       annotations:
	//         vfioctl.dev/iommu-group: "7"
	//         vfioctl.dev/pci-address: "0000:00:05.0"
	//       containerEdits:
	//         deviceNodes:
	//             - path: /dev/vfio/devices/vfio0
	//               type: c
	//               permissions: rw
	//     - name: "0000:01:00.0"
	//       annotations:
	//         vfioctl.dev/iommu-group: "9"
	//         vfioctl.dev/pci-address: "0000:01:00.0"
	//       containerEdits:
	//         deviceNodes:
	//             - path: /dev/vfio/devices/vfio1
	//               type: c
	//               permissions: rw
	// containerEdits:
	//     deviceNodes:
	//         - path: /dev/iommu
	//           type: c
	//           permissions: rw
	// vfioctl.dev/pci=0000:01:00.0
}
