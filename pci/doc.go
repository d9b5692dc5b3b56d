// Package pci reads PCI devices and IOMMU groups from sysfs and moves
// devices between their drivers and vfio-pci safely. It never issues a VFIO
// ioctl: it prepares devices for package vfio.
//
// Binding is what dpdk-devbind.py and driverctl do, with the checks they
// skip: the whole IOMMU group must end up viable; a NIC that is up with
// addresses or routes, or a disk that is mounted, is not taken from its
// driver unless forced; the previous driver is recorded so Restore can give
// the device back; and Bind waits for the VFIO device nodes to appear.
//
// BindOptions.Owner (SetOwner) gives a device's VFIO nodes to a user and
// group, as dpdk-devbind's -U/-G, so an unprivileged VMM can open them.
// Persist saves a binding in PersistDir, as driverctl's saved overrides;
// ApplyPersisted, run at boot by the udev rule and systemd unit that
// `vfioctl persist install` writes, makes the saved bindings again.
//
// # Errors
//
// A group that blocks a bind is a *vfioerr.GroupNotViableError
// (vfioerr.ErrGroupNotViable); a failed sysfs write an error wrapping its
// errno. The sentinels here (ErrAlreadyBound, ErrNotBound, ErrNoRecord,
// ErrBusy with *BusyError naming the holders, ErrNoIOMMU, ErrNoDevice,
// ErrNotPersisted) are states of the driver binding, which no kernel call
// reports as such, so they are this package's own.
package pci
