// Package dma is what a VMM or userspace driver needs to give a device
// memory, whichever kernel interface maps it: page-aligned buffers
// (anonymous or hugetlb), the Mapper interface that the legacy type1
// container (vfio.Container), an iommufd used as a container, and a native
// IOAS (ioasid.IOAS) all satisfy, and an IOVA Allocator that respects the
// ranges and alignment the IOMMU reports.
//
// Code written against Mapper runs unchanged on a kernel with only the type1
// container, on one where /dev/vfio/vfio is served by iommufd, and on the
// cdev + iommufd path: it never asks which.
//
// A failed mmap or munmap is a *vfioerr.OpError wrapping the errno, with a
// hint (huge pages not reserved). The Allocator's refusals (ErrNoSpace, a
// free of what it never handed out) and a Buffer's argument checks are plain
// errors: they involve no kernel call.
package dma
