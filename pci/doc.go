// Package pci reads PCI devices and IOMMU groups from sysfs and moves
// devices between their drivers and vfio-pci safely. It never issues a VFIO
// ioctl: it prepares devices for package vfio.
//
// Binding is what dpdk-devbind.py and driverctl do, with the checks they
// skip: the whole IOMMU group must end up viable; a NIC that is up with
// addresses or routes, or a disk that is mounted, is not taken from its
// driver unless forced; the previous driver is recorded so Restore can give
// the device back; and Bind waits for the VFIO device nodes to appear.
package pci
