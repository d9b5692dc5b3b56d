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
// # Backends
//
// Each Backend is one implementation in a file of its own behind one
// internal interface (backend_container.go for Legacy and IOMMUFDCompat,
// backend_spapr.go for the container on POWER, backend_group_iommufd.go,
// backend_cdev.go); no-IOMMU mode is a mode of each, as the kernel offers
// it on all four. Offers is the one probe of what a machine offers a
// device, and why not the rest: Open's Auto, the cdi package, the device
// plugin and vfioctl doctor all decide by it, and ParseBackend reads the
// words all of them write ("iommufd" is Cdev). Open checks Options once,
// against the backend chosen: an option that means nothing there (IOMMU on
// cdev, RlimitPerProcess on a container, VFToken on cdev) is EINVAL
// naming it.
//
// # IBM POWER
//
// On POWER the IOMMU is SPAPR TCE and the container's model is SPAPRTCEv2
// (or SPAPRTCE, v1). The calls only that model has are reached through
// Container.SPAPR, so a type1 container carries none of them: DMA goes
// through windows (SPAPR.Windows: the default 32-bit one, and dynamic ones
// from CreateWindow), and v2 maps only memory registered first
// (RegisterMemory). Open picks v2 there and gives a SPAPRMapper, which
// registers what it maps, so code written against dma.Mapper runs
// unchanged. iommufd cannot serve devices on POWER and the kernel builds no
// device cdev: those backends answer vfioerr.ErrNotSupported saying why.
//
// Several devices share one address space through Options.Join: the
// second and later devices open into the first one's container, compat IOAS
// or IOAS, with the same Mapper; the shared objects live until the last
// Handle is closed.
//
// # Device features
//
// What a VMM needs of a device beyond its regions and interrupts hangs off
// Device: Migration (the v2 state machine, with Save, Load and Transfer),
// Display and Plane (a vGPU's planes, as dma-bufs or a region),
// EnterLowPower and ExitLowPower (runtime D3hot, with a wakeup eventfd),
// and StartDMALogging (the device's own dirty-page log). Where the kernel
// or the device's driver lacks one, or the call could not change anything,
// the answer is vfioerr.ErrNotSupported saying which.
//
// # Closing
//
// Every object (Container, Group, Device, Eventfd, MMIO, Handle) keeps one
// contract: the first Close releases it, and a second Close or any later
// use fails with an error matching vfioerr.ErrClosed. Methods are safe for
// concurrent use, and a Close waits for calls in flight rather than racing
// them.
//
// # Errors
//
// Errors come from package vfioerr: a *vfioerr.OpError names the ioctl,
// the object and the arguments and wraps the errno (errors.Is(err,
// unix.EBUSY)); a *vfioerr.GroupNotViableError names the devices that keep
// a group from being viable; a *vfioerr.NotSupportedError names the Linux
// version that added a missing feature. Match the sentinels where they are
// declared: vfioerr.ErrClosed, vfioerr.ErrNotSupported,
// vfioerr.ErrGroupNotViable. Every failed ioctl becomes its error in one
// place, with the hint its errno has for that operation, so two calls never
// explain the same errno two ways.
//
// # Names
//
// One rule across vfioctl's packages:
//
//   - Open opens a path: OpenContainer, OpenGroup, OpenCdev, ioasid.Open;
//     vfio.Open opens a device by its PCI address.
//   - New builds a Go value over what the caller passes: a descriptor it
//     owns (NewContainer, NewGroup, NewDevice, NewCdev, ioasid.NewFD) or an
//     open object (NewSPAPRMapper, nvme.New, dma.NewAllocator).
//   - Create makes a new kernel resource that no *_ALLOC ioctl makes:
//     CreateEventfd, dma.CreateBuffer, SPAPR.CreateWindow.
//   - Alloc is kept for iommufd's *_ALLOC ioctls: ioasid.FD.AllocIOAS,
//     AllocHWPT, AllocFaultQueue and the rest.
//   - Reserve and Release take and return IOVA ranges (dma.Allocator);
//     nvme's pool lends memory with TakeBuffer and ReturnBuffer.
//
// Region and IRQ indexes are typed (RegionIndex, IRQIndex), so a constant
// of one kind cannot be passed as the other.
//
// # Descriptors from elsewhere
//
// Every constructor that opens a path has a twin taking a pre-opened fd
// and what the fd cannot tell (NewContainer with its IOMMU model, NewGroup
// with its number, NewDevice and NewCdev with a name). Handle.Send and
// Receive hand a whole opened device to another process over a unix
// socket, so an unprivileged VMM never opens a path.
package vfio
