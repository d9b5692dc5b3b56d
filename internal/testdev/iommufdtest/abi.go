package iommufdtest

import "github.com/vfioctl/vfioctl/uapi"

// cmdNumber is IOMMU_TEST_CMD: _IO(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 32).
const cmdNumber = uapi.IOCNone | uapi.IOMMUFD_TYPE<<8 | (uapi.IOMMUFD_CMD_BASE + 32)

// The operations of IOMMU_TEST_CMD (enum in iommufd_test.h).
const (
	opAddReserved        = 1
	opMockDomain         = 2
	opMDCheckMap         = 3
	opSetTempMemoryLimit = 9
	opMockDomainReplace  = 10
	opMockDomainFlags    = 12
	opDirty              = 13
	opMDCheckIOTLB       = 14
	opTriggerIOPF        = 15
)

// The mock's constants.
const (
	ApertureStart = 1 << 24       // MOCK_APERTURE_START: first IOVA of a mock domain
	ApertureLast  = (1 << 31) - 1 // MOCK_APERTURE_LAST

	DeviceNoDirty    = 1 << 0 // MOCK_FLAGS_DEVICE_NO_DIRTY: the device's IOMMU tracks no dirty pages
	DeviceHugeIOVA   = 1 << 1 // MOCK_FLAGS_DEVICE_HUGE_IOVA
	NestedIOTLBIDMax = 3      // MOCK_NESTED_DOMAIN_IOTLB_ID_MAX
	NestedIOTLBNum   = 4      // MOCK_NESTED_DOMAIN_IOTLB_NUM

	HWInfoTypeSelftest   = 0xfeedbeef // IOMMU_HW_INFO_TYPE_SELFTEST: IOMMU_GET_HW_INFO's type for a mock device
	HWInfoSelftestRegval = 0xdeadbeef // IOMMU_HW_INFO_SELFTEST_REGVAL: HWInfo.TestReg

	HWPTDataSelftest              = 0xdead     // IOMMU_HWPT_DATA_SELFTEST: a nested mock HWPT's data type
	IOTLBDefault                  = 0xbadbeef  // IOMMU_TEST_IOTLB_DEFAULT
	InvalidateDataSelftest        = 0xdeadbeef // IOMMU_HWPT_INVALIDATE_DATA_SELFTEST
	InvalidateDataSelftestInvalid = 0xdadbeef  // IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID
	InvalidateFlagAll             = 1 << 0     // IOMMU_TEST_INVALIDATE_FLAG_ALL
)

// HWInfo is struct iommu_test_hw_info, the data IOMMU_GET_HW_INFO returns
// for a mock device (ioasid.HWInfo.Raw).
type HWInfo struct {
	Flags   uint32 `c:"flags"`
	TestReg uint32 `c:"test_reg"`
}

// HWPTSelftest is struct iommu_hwpt_selftest, the data of a nested mock
// HWPT: every entry of its IOTLB starts as IOTLB.
type HWPTSelftest struct {
	IOTLB uint32 `c:"iotlb"`
}

// InvalidateSelftest is struct iommu_hwpt_invalidate_selftest, one request
// of IOMMU_HWPT_INVALIDATE on a nested mock HWPT: it clears IOTLB entry
// IOTLBID, or every entry with InvalidateFlagAll.
type InvalidateSelftest struct {
	Flags   uint32 `c:"flags"`
	IOTLBID uint32 `c:"iotlb_id"`
}

// testCmd is struct iommu_test_cmd; U is its union, which the payload
// types below overlay (each field tagged with its C name in the union
// member named by members).
type testCmd struct {
	Size uint32
	Op   uint32
	ID   uint32
	_    uint32
	U    [6]uint64
	Last uint32
	_    uint32
}

type addReserved struct {
	Start  uint64 `c:"start"`
	Length uint64 `c:"length"`
}

type mockDomainFlags struct {
	OutStdevID uint32 `c:"out_stdev_id"`
	OutHWPTID  uint32 `c:"out_hwpt_id"`
	OutIdevID  uint32 `c:"out_idev_id"`
	DevFlags   uint32 `c:"dev_flags"`
}

type mockDomainReplace struct {
	PtID uint32 `c:"pt_id"`
}

type checkMap struct {
	IOVA   uint64 `c:"iova"`
	Length uint64 `c:"length"`
	Uptr   uint64 `c:"uptr"`
}

type memoryLimit struct {
	Limit uint32 `c:"limit"`
}

type dirty struct {
	Flags      uint32 `c:"flags"`
	_          uint32
	IOVA       uint64 `c:"iova"`
	Length     uint64 `c:"length"`
	PageSize   uint64 `c:"page_size"`
	Uptr       uint64 `c:"uptr"`
	OutNrDirty uint64 `c:"out_nr_dirty"`
}

type checkIOTLB struct {
	ID    uint32 `c:"id"`
	IOTLB uint32 `c:"iotlb"`
}

type triggerIOPF struct {
	DevID uint32 `c:"dev_id"`
	PASID uint32 `c:"pasid"`
	GrpID uint32 `c:"grpid"`
	Perm  uint32 `c:"perm"`
	Addr  uint64 `c:"addr"`
}
