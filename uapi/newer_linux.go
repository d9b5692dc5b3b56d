package uapi

// ABI added to include/uapi/linux/iommufd.h after Linux 6.12. The 6.12 part
// is generated and checked against the C headers (abi_test.go); these are
// kept by hand from mainline and checked for size and offsets in
// newer_linux_test.go. Each carries the kernel version that added it, and
// Since maps every iommufd ioctl (these and the 6.12 ones) to its version
// so callers can say "needs Linux X.Y" when the running kernel answers
// ENOTTY.

const (
	IOMMUFD_CMD_IOAS_MAP_FILE       = 0x8f // Linux 6.13
	IOMMUFD_CMD_VIOMMU_ALLOC        = 0x90 // Linux 6.13
	IOMMUFD_CMD_VDEVICE_ALLOC       = 0x91 // Linux 6.13
	IOMMUFD_CMD_IOAS_CHANGE_PROCESS = 0x92 // Linux 6.14
	IOMMUFD_CMD_VEVENTQ_ALLOC       = 0x93 // Linux 6.15
	IOMMUFD_CMD_HW_QUEUE_ALLOC      = 0x94 // Linux 6.17
)

const (
	// IOMMU_IOAS_MAP_FILE maps a range of a memfd (or other mappable file) into an IOAS (struct iommu_ioas_map_file). Linux 6.13.
	IOMMU_IOAS_MAP_FILE = IOCNone | IOMMUFD_TYPE<<8 | IOMMUFD_CMD_IOAS_MAP_FILE
	// IOMMU_VIOMMU_ALLOC allocates a virtual IOMMU on a nesting-parent HWPT (struct iommu_viommu_alloc). Linux 6.13.
	IOMMU_VIOMMU_ALLOC = IOCNone | IOMMUFD_TYPE<<8 | IOMMUFD_CMD_VIOMMU_ALLOC
	// IOMMU_VDEVICE_ALLOC creates a device's virtual instance with a guest-visible ID on a vIOMMU (struct iommu_vdevice_alloc). Linux 6.13.
	IOMMU_VDEVICE_ALLOC = IOCNone | IOMMUFD_TYPE<<8 | IOMMUFD_CMD_VDEVICE_ALLOC
	// IOMMU_IOAS_CHANGE_PROCESS moves the pinned-page accounting of every mapping to the calling process, for live update (struct iommu_ioas_change_process). Linux 6.14.
	IOMMU_IOAS_CHANGE_PROCESS = IOCNone | IOMMUFD_TYPE<<8 | IOMMUFD_CMD_IOAS_CHANGE_PROCESS
	// IOMMU_VEVENTQ_ALLOC allocates a queue delivering a vIOMMU's events, returning its id and fd (struct iommu_veventq_alloc). Linux 6.15.
	IOMMU_VEVENTQ_ALLOC = IOCNone | IOMMUFD_TYPE<<8 | IOMMUFD_CMD_VEVENTQ_ALLOC
	// IOMMU_HW_QUEUE_ALLOC hands a hardware queue of a vIOMMU to user space (struct iommu_hw_queue_alloc). Linux 6.17.
	IOMMU_HW_QUEUE_ALLOC = IOCNone | IOMMUFD_TYPE<<8 | IOMMUFD_CMD_HW_QUEUE_ALLOC
)

// Since maps every iommufd ioctl to the Linux version that added it, so a
// caller seeing ENOTTY can say which kernel it needs.
var Since = map[uint]string{
	IOMMU_DESTROY:                 "6.2",
	IOMMU_IOAS_ALLOC:              "6.2",
	IOMMU_IOAS_IOVA_RANGES:        "6.2",
	IOMMU_IOAS_ALLOW_IOVAS:        "6.2",
	IOMMU_IOAS_MAP:                "6.2",
	IOMMU_IOAS_COPY:               "6.2",
	IOMMU_IOAS_UNMAP:              "6.2",
	IOMMU_OPTION:                  "6.2",
	IOMMU_VFIO_IOAS:               "6.2",
	IOMMU_HWPT_ALLOC:              "6.6",
	IOMMU_GET_HW_INFO:             "6.6",
	IOMMU_HWPT_SET_DIRTY_TRACKING: "6.7",
	IOMMU_HWPT_GET_DIRTY_BITMAP:   "6.7",
	IOMMU_HWPT_INVALIDATE:         "6.8",
	IOMMU_FAULT_QUEUE_ALLOC:       "6.11",
	IOMMU_IOAS_MAP_FILE:           "6.13",
	IOMMU_VIOMMU_ALLOC:            "6.13",
	IOMMU_VDEVICE_ALLOC:           "6.13",
	IOMMU_IOAS_CHANGE_PROCESS:     "6.14",
	IOMMU_VEVENTQ_ALLOC:           "6.15",
	IOMMU_HW_QUEUE_ALLOC:          "6.17",
}

// Hardware info and data types added after 6.12.
const (
	IOMMU_HW_INFO_TYPE_ARM_SMMUV3  = 2 // enum iommu_hw_info_type, Linux 6.14
	IOMMU_HW_INFO_TYPE_AMD         = 3 // enum iommu_hw_info_type, Linux 6.17
	IOMMU_HWPT_DATA_ARM_SMMUV3     = 2 // enum iommu_hwpt_data_type, Linux 6.14
	IOMMU_VIOMMU_TYPE_DEFAULT      = 0 // enum iommu_viommu_type, Linux 6.13
	IOMMU_VIOMMU_TYPE_ARM_SMMUV3   = 1 // enum iommu_viommu_type, Linux 6.13
	IOMMU_VEVENTQ_FLAG_LOST_EVENTS = 1 // struct iommufd_vevent_header flags, Linux 6.15
)

// IommuIoasMapFile is struct iommu_ioas_map_file (Linux 6.13, 40 bytes).
type IommuIoasMapFile struct {
	Size   uint32
	Flags  uint32
	IoasId uint32
	Fd     int32
	Start  uint64
	Length uint64
	Iova   uint64
}

// IommuViommuAlloc is struct iommu_viommu_alloc (Linux 6.13, 24 bytes; 40
// since 6.16 added driver data; the kernel takes either size).
type IommuViommuAlloc struct {
	Size        uint32
	Flags       uint32
	Type        uint32
	DevId       uint32
	HwptId      uint32
	OutViommuId uint32
	DataLen     uint32  // Linux 6.16
	Reserved    uint32  // Linux 6.16
	DataUptr    Pointer // Linux 6.16
}

// IommuVdeviceAlloc is struct iommu_vdevice_alloc (Linux 6.13, 24 bytes).
type IommuVdeviceAlloc struct {
	Size         uint32
	ViommuId     uint32
	DevId        uint32
	OutVdeviceId uint32
	VirtId       uint64
}

// IommuIoasChangeProcess is struct iommu_ioas_change_process (Linux 6.14, 8 bytes).
type IommuIoasChangeProcess struct {
	Size     uint32
	Reserved uint32
}

// IommuVeventqAlloc is struct iommu_veventq_alloc (Linux 6.15, 32 bytes).
type IommuVeventqAlloc struct {
	Size         uint32
	Flags        uint32
	ViommuId     uint32
	Type         uint32
	VeventqDepth uint32
	OutVeventqId uint32
	OutVeventqFd uint32
	Reserved     uint32
}

// IommufdVeventHeader is struct iommufd_vevent_header (Linux 6.15, 8 bytes),
// read from a vEVENTQ fd before each event's data.
type IommufdVeventHeader struct {
	Flags    uint32
	Sequence uint32
}

// IommuHwQueueAlloc is struct iommu_hw_queue_alloc (Linux 6.17, 40 bytes).
type IommuHwQueueAlloc struct {
	Size              uint32
	Flags             uint32
	ViommuId          uint32
	Type              uint32
	Index             uint32
	OutHwQueueId      uint32
	NestingParentIova uint64
	Length            uint64
}

// IommuHwInfoArmSmmuv3 is struct iommu_hw_info_arm_smmuv3 (Linux 6.14, 40
// bytes): the SMMUv3 ID registers, decoded by the SMMUv3 specification.
type IommuHwInfoArmSmmuv3 struct {
	Flags    uint32
	Reserved uint32
	Idr      [6]uint32
	Iidr     uint32
	Aidr     uint32
}

// IommuHwInfoAmd is struct iommu_hw_info_amd (Linux 6.17, 16 bytes): the AMD
// IOMMU extended feature registers.
type IommuHwInfoAmd struct {
	Efr  uint64
	Efr2 uint64
}
