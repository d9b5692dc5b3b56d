// Package cdi describes VFIO devices to container runtimes in the Container
// Device Interface (CDI) format that containerd, CRI-O, podman and the
// kubelet read: for each PCI device bound to vfio-pci, the device nodes a
// process needs to use it, through one backend chosen for the whole set:
//
//   - legacy: /dev/vfio/vfio (the type1 container) and the group /dev/vfio/N;
//   - iommufd: /dev/iommu and the device's cdev /dev/vfio/devices/vfioN
//     (Linux 6.6+).
//
// A Policy chooses: Legacy, PreferIOMMUFD (iommufd when every device of the
// set has a cdev, else legacy for all) or RequireIOMMUFD. Backends are never
// mixed within a set: a VMM given one device of each could not put them in
// one address space.
//
// Specs are written and read with the CDI project's own packages
// (tags.cncf.io/container-device-interface), which validate them.
// Shell equivalent of Generate+Write: `vfioctl cdi generate`.
//
// The backend a NodeSet names is chosen by vfio.Offers, the probe vfio.Open
// uses, and is a word vfio.ParseBackend reads ("iommufd" is vfio.Cdev).
// Errors: a device that cannot be handed out carries pci's or vfioerr's
// error (pci.ErrNotBound, vfioerr.ErrGroupNotViable); ErrNoIOMMUFD is this
// package's, for RequireIOMMUFD on a set iommufd cannot serve.
package cdi
