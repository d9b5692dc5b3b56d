// Package iommufdtest drives the mock IOMMU of a kernel built with
// CONFIG_IOMMUFD_TEST through IOMMU_TEST_CMD, the ioctl the kernel's own
// iommufd selftests use (drivers/iommu/iommufd/iommufd_test.h, Linux 6.12).
// The mock offers what no emulated IOMMU does: dirty tracking, nested
// HWPTs with invalidation and I/O page faults, so the e2e tests can prove
// the public ioasid API against a real kernel implementation of each.
//
// It is for tests only: the kernel calls the option dangerous, and the
// layouts here are checked against the header by TestLayout, not
// generated, because the header is not uapi.
package iommufdtest
