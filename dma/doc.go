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
package dma
