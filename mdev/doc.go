// Package mdev manages mediated devices (VFIO mdev), as mdevctl does: the
// parents that offer them and their types, and creating and removing
// instances. A mediated device is a VFIO device a parent driver emulates
// or slices off real hardware (vGPUs, s390's vfio-ap and vfio-ccw, the
// kernel's mtty, mdpy and mbochs samples); each is named by a UUID, is
// alone in an IOMMU group of its own, has a device cdev of its own, and
// opens with vfio.Open(uuid, ...) through every backend.
//
// Shell equivalents: Parents reads /sys/class/mdev_bus/*/mdev_supported_types;
// Create is `echo UUID > .../TYPE/create`; Remove is `echo 1 >
// /sys/bus/mdev/devices/UUID/remove`.
//
// Errors: what sysfs refuses is a *vfioerr.OpError wrapping the errno (a
// UUID in use is EEXIST, a type with no instances left ENOSPC); removing a
// device some process holds open is a *pci.BusyError (pci.ErrBusy) naming
// the holders, because the kernel's remove would block until they close it.
package mdev
