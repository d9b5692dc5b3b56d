// Package ioasid drives iommufd (/dev/iommu, Linux 6.2+): the kernel object
// that owns I/O address spaces. In the design vfioctl implements, the
// address space lives here and everything else is a view of it: a VFIO
// device cdev binds to an FD and attaches to an IOAS or HWPT; a VFIO group
// accepts an FD in place of a container (vfio.Group.SetContainer); and the
// legacy type1 ioctls are answered by the same FD (vfio.OpenContainerPath
// with /dev/iommu), or by /dev/vfio/vfio itself on kernels built with
// IOMMUFD_VFIO_CONTAINER.
//
// Objects map one to one onto the kernel's: FD (the iommufd), IOAS, HWPT,
// FaultQueue, VIOMMU, VDevice, VEventQueue, HWQueue. Each method names its
// ioctl. Every object keeps one Close contract: the first Close destroys it
// (IOMMU_DESTROY); a destroy the kernel refuses (EBUSY while in use) leaves
// it open, so Close can be retried; after a successful Close every use and
// Close fails with ErrClosed. A borrowed object (CompatIOAS, IOASByID,
// VIOMMUByID) is not destroyed, but is just as closed. Methods are safe for
// concurrent use, and Close waits for calls in flight.
//
// A HWPT is a paging one (AllocHWPT; AllocPagingHWPT to have its I/O page
// faults reported to a FaultQueue) or a nested one on a nest parent
// (AllocNestedHWPT with the IOMMU driver's stage-1 data), invalidated with
// HWPT.Invalidate. No QEMU 7.2 vIOMMU offers dirty tracking, nesting or
// faults; the e2e suite proves them against the kernel's own mock IOMMU
// (CONFIG_IOMMUFD_TEST, the iommufdtest guest kernel).
//
// An ioctl the running kernel does not know answers ENOTTY; such calls
// return a *vfioerr.NotSupportedError (errors.Is(err, vfioerr.ErrNotSupported))
// naming the Linux version adding it (uapi.Since). Other failures are a
// *vfioerr.OpError wrapping the errno.
package ioasid
