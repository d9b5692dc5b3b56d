// Package vfio drives devices through Linux VFIO: containers, groups and
// devices, their regions, interrupts and resets.
//
// A device is reached one of two ways, with the same Device API after:
//
//   - through its IOMMU group (/dev/vfio/N): Group.SetContainer with a
//     Container (/dev/vfio/vfio) or an iommufd (*ioasid.FD), then
//     Group.Device;
//   - through its own char device (/dev/vfio/devices/vfioN, Linux 6.6):
//     OpenCdev, Device.BindIOMMUFD, Device.AttachPT to an IOAS or HWPT.
//
// Open chooses the best path the kernel offers (or the one forced) and
// returns the Device with a dma.Mapper for its IOMMU, so callers never ask
// which kernel they run on.
//
// Every object owns its file descriptor and closes it exactly once; using
// an object after Close fails with an error matching kernel.ErrClosed.
// Errors name the ioctl and its arguments and wrap the errno; a group that
// is not viable gives a GroupNotViableError naming the devices that block
// it. Every constructor that opens a path has a twin taking a pre-opened fd
// (NewContainer, NewGroup, NewDevice), for fds handed over by a privileged
// helper.
package vfio
