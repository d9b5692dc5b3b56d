package ioasid

import (
	"fmt"

	"github.com/vfioctl/vfioctl/uapi"
)

// HWInfo is IOMMU_GET_HW_INFO for a device, decoded by IOMMU type.
type HWInfo struct {
	Type         uint32 // uapi.IOMMU_HW_INFO_TYPE_*
	Capabilities uint64 // uapi.IOMMU_HW_CAP_* (e.g. dirty tracking)
	VTD          *uapi.IommuHwInfoVtd
	ARMSMMUv3    *uapi.IommuHwInfoArmSmmuv3
	AMD          *uapi.IommuHwInfoAmd
	Raw          []byte
}

// TypeName names the IOMMU type.
func (h *HWInfo) TypeName() string {
	switch h.Type {
	case uapi.IOMMU_HW_INFO_TYPE_NONE:
		return "none"
	case uapi.IOMMU_HW_INFO_TYPE_INTEL_VTD:
		return "intel-vtd"
	case uapi.IOMMU_HW_INFO_TYPE_ARM_SMMUV3:
		return "arm-smmuv3"
	case uapi.IOMMU_HW_INFO_TYPE_AMD:
		return "amd"
	}
	return fmt.Sprintf("type-%#x", h.Type)
}

// DirtyTracking reports whether the IOMMU can track dirty pages for this
// device (IOMMU_HW_CAP_DIRTY_TRACKING).
func (h *HWInfo) DirtyTracking() bool { return h.Capabilities&uapi.IOMMU_HW_CAP_DIRTY_TRACKING != 0 }

// HWInfo is IOMMU_GET_HW_INFO for devID (a device bound to this FD).
func (f *FD) HWInfo(devID uint32) (*HWInfo, error) {
	buf := make([]byte, 256) // the kernel writes it through DataUptr
	q := uapi.IommuHwInfo{DevId: devID, DataLen: uint32(len(buf)), DataUptr: uapi.SlicePointer(buf)}
	err := f.fd.Ioctl(call("IOMMU_GET_HW_INFO", uapi.IOMMU_GET_HW_INFO, fmt.Sprintf("dev %d", devID)), func(fd int) error { return uapi.IoctlIommuGetHwInfo(fd, &q) })
	if err != nil {
		return nil, err
	}
	if q.DataLen > uint32(len(buf)) {
		q.DataLen = uint32(len(buf))
	}
	h := &HWInfo{Type: q.OutDataType, Capabilities: q.OutCapabilities, Raw: buf[:q.DataLen]}
	switch h.Type {
	case uapi.IOMMU_HW_INFO_TYPE_INTEL_VTD:
		h.VTD, _ = uapi.Decode[uapi.IommuHwInfoVtd](h.Raw) // nil when the kernel returned less
	case uapi.IOMMU_HW_INFO_TYPE_ARM_SMMUV3:
		h.ARMSMMUv3, _ = uapi.Decode[uapi.IommuHwInfoArmSmmuv3](h.Raw)
	case uapi.IOMMU_HW_INFO_TYPE_AMD:
		h.AMD, _ = uapi.Decode[uapi.IommuHwInfoAmd](h.Raw)
	}
	return h, nil
}
