package vfio

import (
	"github.com/vfioctl/vfioctl/internal/sysfs"
)

// unsafeInterruptsHint explains EPERM from VFIO_SET_IOMMU, GET_DEVICE_FD,
// SET_CONTAINER or BIND_IOMMUFD. The usual cause is an IOMMU without
// interrupt remapping, which VFIO refuses unless told to allow unsafe
// interrupts; it blames that only where the facts say so.
func unsafeInterruptsHint() string {
	if sysfs.UnsafeInterrupts("vfio_iommu_type1") == "Y" && sysfs.UnsafeInterrupts("iommufd") == "Y" {
		return "unsafe interrupts are already allowed, so interrupt remapping is not the cause"
	}
	switch sysfs.InterruptRemapping() {
	case sysfs.RemapAbsent:
		return "the IOMMU has no interrupt remapping, so a device could forge MSIs, and VFIO refuses it: boot with vfio_iommu_type1.allow_unsafe_interrupts=1 and iommufd.allow_unsafe_interrupts=1 if you accept the risk"
	case sysfs.RemapUnknown:
		return "if the IOMMU lacks interrupt remapping, VFIO refuses devices unless vfio_iommu_type1.allow_unsafe_interrupts=1 and iommufd.allow_unsafe_interrupts=1"
	}
	return ""
}
