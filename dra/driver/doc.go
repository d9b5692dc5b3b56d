// Package driver is a Dynamic Resource Allocation (DRA, resource.k8s.io/v1)
// kubelet plugin for VFIO devices, built on vfioctl's pci and cdi packages
// and on k8s.io/dynamic-resource-allocation's kubeletplugin helper.
//
// It publishes one ResourceSlice per node listing the VFIO-capable PCI
// functions a Selection picks, with typed attributes the scheduler selects
// on (Attributes lists them); an IOMMU group of several functions is one
// device, claimed whole. NodePrepareResources binds a claim's devices to
// vfio-pci (pci.Bind, with its safety checks), writes one CDI spec per
// claim under one backend (the Config's policy) and returns the CDI
// names; NodeUnprepareResources gives the devices back to the drivers they
// had and removes the spec. Each prepared claim is checkpointed, so a
// restarted plugin answers a repeated prepare without binding twice and
// unprepares what an earlier process prepared.
package driver
