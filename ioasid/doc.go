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
// FaultQueue. Each method names its ioctl. An ioctl the running kernel does
// not know answers ENOTTY; such calls return an error matching
// ErrNotSupported that names the Linux version adding it (uapi.Since).
package ioasid
