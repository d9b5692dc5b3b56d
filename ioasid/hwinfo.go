package ioasid

import (
	"fmt"

	"github.com/vfioctl/vfioctl/uapi"
)

// HWInfo is IOMMU_GET_HW_INFO for a device, decoded by IOMMU type.
type HWInfo struct {
	Type         uint32 // uapi.IOMMU_HW_INFO_TYPE_*
	Capabilities uint64 // uapi.IOMMU_HW_CAP_* (e.g. dirty tracking)
	// The IOMMU's registers, by type; nil for the other types, or when
	// the kernel returned less than the type's data.
	VTD       *VTDInfo
	ARMSMMUv3 *SMMUv3Info
	AMD       *AMDInfo
	Raw       []byte // the data as the kernel returned it
}

// VTDInfo is Intel VT-d's hardware info (struct iommu_hw_info_vtd): the
// capability and extended capability registers, decoded by the VT-d
// specification.
type VTDInfo struct {
	Flags   uint32
	CapReg  uint64
	EcapReg uint64
}

// SMMUv3Info is an ARM SMMUv3's hardware info (struct
// iommu_hw_info_arm_smmuv3, Linux 6.14): its ID registers.
type SMMUv3Info struct {
	Flags uint32
	IDR   [6]uint32
	IIDR  uint32
	AIDR  uint32
}

// AMDInfo is an AMD IOMMU's hardware info (struct iommu_hw_info_amd, Linux
// 6.17): the extended feature registers.
type AMDInfo struct {
	EFR, EFR2 uint64
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
		if r, err := uapi.Decode[uapi.IommuHwInfoVtd](h.Raw); err == nil { // an error when the kernel returned less
			h.VTD = &VTDInfo{Flags: r.Flags, CapReg: r.CapReg, EcapReg: r.EcapReg}
		}
	case uapi.IOMMU_HW_INFO_TYPE_ARM_SMMUV3:
		if r, err := uapi.Decode[uapi.IommuHwInfoArmSmmuv3](h.Raw); err == nil {
			h.ARMSMMUv3 = &SMMUv3Info{Flags: r.Flags, IDR: r.Idr, IIDR: r.Iidr, AIDR: r.Aidr}
		}
	case uapi.IOMMU_HW_INFO_TYPE_AMD:
		if r, err := uapi.Decode[uapi.IommuHwInfoAmd](h.Raw); err == nil {
			h.AMD = &AMDInfo{EFR: r.Efr, EFR2: r.Efr2}
		}
	}
	return h, nil
}
