package iommufdtest

import (
	"fmt"
	"reflect"
	"testing"
	"unsafe"

	"github.com/vfioctl/vfioctl/internal/cabi"
)

// members maps each union member of struct iommu_test_cmd this package
// uses to its Go payload type.
var members = map[string]any{
	"add_reserved":        addReserved{},
	"mock_domain_flags":   mockDomainFlags{},
	"mock_domain_replace": mockDomainReplace{},
	"check_map":           checkMap{},
	"memory_limit":        memoryLimit{},
	"dirty":               dirty{},
	"check_iotlb":         checkIOTLB{},
	"trigger_iopf":        triggerIOPF{},
}

// structs maps the header's other structs to their Go types.
var structs = map[string]any{
	"iommu_test_hw_info":             HWInfo{},
	"iommu_hwpt_selftest":            HWPTSelftest{},
	"iommu_hwpt_invalidate_selftest": InvalidateSelftest{},
}

var consts = map[string]uint64{
	"IOMMU_TEST_CMD":                              cmdNumber,
	"IOMMU_TEST_OP_ADD_RESERVED":                  opAddReserved,
	"IOMMU_TEST_OP_MOCK_DOMAIN":                   opMockDomain,
	"IOMMU_TEST_OP_MD_CHECK_MAP":                  opMDCheckMap,
	"IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT":         opSetTempMemoryLimit,
	"IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE":           opMockDomainReplace,
	"IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS":             opMockDomainFlags,
	"IOMMU_TEST_OP_DIRTY":                         opDirty,
	"IOMMU_TEST_OP_MD_CHECK_IOTLB":                opMDCheckIOTLB,
	"IOMMU_TEST_OP_TRIGGER_IOPF":                  opTriggerIOPF,
	"MOCK_APERTURE_START":                         ApertureStart,
	"MOCK_APERTURE_LAST":                          ApertureLast,
	"MOCK_FLAGS_DEVICE_NO_DIRTY":                  DeviceNoDirty,
	"MOCK_FLAGS_DEVICE_HUGE_IOVA":                 DeviceHugeIOVA,
	"MOCK_NESTED_DOMAIN_IOTLB_ID_MAX":             NestedIOTLBIDMax,
	"MOCK_NESTED_DOMAIN_IOTLB_NUM":                NestedIOTLBNum,
	"IOMMU_HW_INFO_TYPE_SELFTEST":                 HWInfoTypeSelftest,
	"IOMMU_HW_INFO_SELFTEST_REGVAL":               HWInfoSelftestRegval,
	"IOMMU_HWPT_DATA_SELFTEST":                    HWPTDataSelftest,
	"IOMMU_TEST_IOTLB_DEFAULT":                    IOTLBDefault,
	"IOMMU_HWPT_INVALIDATE_DATA_SELFTEST":         InvalidateDataSelftest,
	"IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID": InvalidateDataSelftestInvalid,
	"IOMMU_TEST_INVALIDATE_FLAG_ALL":              InvalidateFlagAll,
}

// TestLayout compiles C against the 6.12 tree's iommufd_test.h and checks
// every size, offset and constant this package declares. Like uapi's
// TestABI it never skips: without the kernel source it fails saying how to
// get it.
func TestLayout(t *testing.T) {
	src, err := cabi.SourceDir("../../..")
	if err != nil {
		t.Fatal(err)
	}
	inc, err := cabi.HeaderDir("../../..")
	if err != nil {
		t.Fatal(err)
	}
	var exprs []string
	var want []uint64
	check := func(expr string, v uintptr) {
		exprs = append(exprs, expr)
		want = append(want, uint64(v))
	}
	var c testCmd
	check("sizeof(struct iommu_test_cmd)", unsafe.Sizeof(c))
	check("offsetof(struct iommu_test_cmd, size)", unsafe.Offsetof(c.Size))
	check("offsetof(struct iommu_test_cmd, op)", unsafe.Offsetof(c.Op))
	check("offsetof(struct iommu_test_cmd, id)", unsafe.Offsetof(c.ID))
	check("offsetof(struct iommu_test_cmd, add_reserved)", unsafe.Offsetof(c.U))
	check("offsetof(struct iommu_test_cmd, last) - offsetof(struct iommu_test_cmd, add_reserved)", unsafe.Sizeof(c.U))
	check("offsetof(struct iommu_test_cmd, last)", unsafe.Offsetof(c.Last))
	for m, v := range members {
		typ := reflect.TypeOf(v)
		if typ.Size() > unsafe.Sizeof(c.U) {
			t.Errorf("%s: Go payload %s is %d bytes, more than the union's %d", m, typ, typ.Size(), unsafe.Sizeof(c.U))
		}
		check(fmt.Sprintf("offsetof(struct iommu_test_cmd, %s)", m), unsafe.Offsetof(c.U))
		fields(typ, "((struct iommu_test_cmd *)0)->"+m+".%s", fmt.Sprintf("offsetof(struct iommu_test_cmd, %s.%%s) - offsetof(struct iommu_test_cmd, %s)", m, m), check)
	}
	for s, v := range structs {
		typ := reflect.TypeOf(v)
		check(fmt.Sprintf("sizeof(struct %s)", s), typ.Size())
		fields(typ, "((struct "+s+" *)0)->%s", fmt.Sprintf("offsetof(struct %s, %%s)", s), check)
	}
	for name, v := range consts {
		check(name, uintptr(v))
	}

	got, err := cabi.Eval([]string{inc, src}, "#include <linux/iommufd.h>\n#include \"drivers/iommu/iommufd/iommufd_test.h\"", exprs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range exprs {
		if got[i] != want[i] {
			t.Errorf("%s: C %#x, Go %#x", exprs[i], got[i], want[i])
		}
	}
	t.Logf("checked %d sizes, offsets and constants against %s/drivers/iommu/iommufd/iommufd_test.h", len(exprs), src)
}

// fields checks every tagged field of typ: its size (sizeof of the field
// expression with the C name substituted) and its offset (likewise).
func fields(typ reflect.Type, field, offset string, check func(string, uintptr)) {
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		name := f.Tag.Get("c")
		if name == "" {
			continue
		}
		check(fmt.Sprintf(offset, name), f.Offset)
		check("sizeof("+fmt.Sprintf(field, name)+")", f.Type.Size())
	}
}
