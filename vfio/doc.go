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
// # IBM POWER
//
// On POWER the IOMMU is SPAPR TCE and the container's model is SPAPRTCEv2
// (or SPAPRTCE, v1): DMA goes through windows (Container.Windows: the
// default 32-bit one, and dynamic ones from CreateWindow), and v2 maps
// only memory registered first (RegisterMemory). Open picks v2 there and
// gives a SPAPRMapper, which registers what it maps, so code written
// against dma.Mapper runs unchanged. iommufd cannot serve devices on POWER
// and the kernel builds no device cdev: those backends answer
// ErrNotSupported saying why.
//
// Several devices share one address space through Options.Join: the
// second and later devices open into the first one's container, compat IOAS
// or IOAS, with the same Mapper; the shared objects live until the last
// Handle is closed.
//
// # Closing
//
// Every object (Container, Group, Device, Eventfd, MMIO, Handle) keeps one
// contract: the first Close releases it, and a second Close or any later
// use fails with an error matching ErrClosed. Methods are safe for
// concurrent use, and a Close waits for calls in flight rather than racing
// them.
//
// # Errors
//
// Errors come from package vfioerr: a *vfioerr.OpError names the ioctl,
// the object and the arguments and wraps the errno (errors.Is(err,
// unix.EBUSY)); a *vfioerr.GroupNotViableError names the devices that keep
// a group from being viable; a *vfioerr.NotSupportedError names the Linux
// version that added a missing feature. ErrClosed, ErrNotSupported and
// ErrGroupNotViable are the vfioerr sentinels, re-exported.
//
// # Descriptors from elsewhere
//
// Every constructor that opens a path has a twin taking a pre-opened fd
// and what the fd cannot tell (NewContainer with its IOMMU model, NewGroup
// with its number, NewDevice and NewCdev with a name). Handle.Send and
// Receive hand a whole opened device to another process over a unix
// socket, so an unprivileged VMM never opens a path.
package vfio
