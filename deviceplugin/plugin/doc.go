// Package plugin is a Kubernetes device plugin (the kubelet's
// deviceplugin/v1beta1 API over gRPC) for PCI devices bound to vfio-pci,
// built on vfioctl's pci and cdi packages.
//
// A Plugin serves one resource (e.g. "vfioctl.dev/edu", the devices whose
// vendor:device IDs it selects): it registers with the kubelet, lists the
// devices and their health, and answers Allocate with the device nodes of
// one backend (legacy: /dev/vfio/vfio + /dev/vfio/N; iommufd: /dev/iommu +
// /dev/vfio/devices/vfioN, chosen by a cdi.Policy for the whole resource
// and never mixed), the matching CDI device names, and the PCI addresses in
// PCI_RESOURCE_<RESOURCE>, the variable KubeVirt reads.
//
// Only devices whose IOMMU group is viable and holds no other endpoint are
// offered: a group is handed out whole, so two devices of one group cannot
// go to two pods. A device that is unbound from vfio-pci, removed, or whose
// group stops being viable turns Unhealthy; when the kubelet restarts (it
// deletes the plugins' sockets) the plugin serves and registers again.
//
// This package lives in a module of its own, so that importers of the
// vfioctl library never inherit Kubernetes' dependencies.
package plugin
