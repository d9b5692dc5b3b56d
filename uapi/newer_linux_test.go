package uapi

import (
	"reflect"
	"strings"
	"testing"
)

// goFieldName is the Go name genuapi gives a C member: out_viommu_id is
// OutViommuId, __reserved is Reserved.
func goFieldName(c string) string {
	var b strings.Builder
	for _, part := range strings.Split(strings.TrimLeft(c, "_"), "_") {
		if part != "" {
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	return b.String()
}

// The post-6.12 ABI cannot be compiled against the 6.12 headers, so its
// layouts are checked against the sizes and offsets the mainline header
// gives (every field of every struct).
func TestNewerABI(t *testing.T) {
	type member struct {
		name string // as the C header spells it
		off  uintptr
	}
	for _, c := range []struct {
		name    string
		typ     reflect.Type
		size    uintptr
		members []member // every member, in order
	}{
		{"iommu_ioas_map_file", reflect.TypeOf(IommuIoasMapFile{}), 40, []member{
			{"size", 0}, {"flags", 4}, {"ioas_id", 8}, {"fd", 12}, {"start", 16}, {"length", 24}, {"iova", 32}}},
		{"iommu_viommu_alloc", reflect.TypeOf(IommuViommuAlloc{}), 40, []member{
			{"size", 0}, {"flags", 4}, {"type", 8}, {"dev_id", 12}, {"hwpt_id", 16}, {"out_viommu_id", 20},
			{"data_len", 24}, {"__reserved", 28}, {"data_uptr", 32}}},
		{"iommu_vdevice_alloc", reflect.TypeOf(IommuVdeviceAlloc{}), 24, []member{
			{"size", 0}, {"viommu_id", 4}, {"dev_id", 8}, {"out_vdevice_id", 12}, {"virt_id", 16}}},
		{"iommu_ioas_change_process", reflect.TypeOf(IommuIoasChangeProcess{}), 8, []member{
			{"size", 0}, {"__reserved", 4}}},
		{"iommu_veventq_alloc", reflect.TypeOf(IommuVeventqAlloc{}), 32, []member{
			{"size", 0}, {"flags", 4}, {"viommu_id", 8}, {"type", 12}, {"veventq_depth", 16},
			{"out_veventq_id", 20}, {"out_veventq_fd", 24}, {"__reserved", 28}}},
		{"iommufd_vevent_header", reflect.TypeOf(IommufdVeventHeader{}), 8, []member{
			{"flags", 0}, {"sequence", 4}}},
		{"iommu_hw_queue_alloc", reflect.TypeOf(IommuHwQueueAlloc{}), 40, []member{
			{"size", 0}, {"flags", 4}, {"viommu_id", 8}, {"type", 12}, {"index", 16}, {"out_hw_queue_id", 20},
			{"nesting_parent_iova", 24}, {"length", 32}}},
		{"iommu_hw_info_arm_smmuv3", reflect.TypeOf(IommuHwInfoArmSmmuv3{}), 40, []member{
			{"flags", 0}, {"__reserved", 4}, {"idr", 8}, {"iidr", 32}, {"aidr", 36}}},
		{"iommu_hw_info_amd", reflect.TypeOf(IommuHwInfoAmd{}), 16, []member{
			{"efr", 0}, {"efr2", 8}}},
	} {
		if c.typ.Size() != c.size {
			t.Errorf("sizeof(struct %s) = %d, want %d", c.name, c.typ.Size(), c.size)
		}
		if c.typ.NumField() != len(c.members) {
			t.Errorf("struct %s: Go has %d fields, the header %d members", c.name, c.typ.NumField(), len(c.members))
			continue
		}
		for i, m := range c.members {
			f := c.typ.Field(i)
			if want := goFieldName(m.name); f.Name != want || f.Offset != m.off {
				t.Errorf("struct %s member %d: Go %s at %d, header %s (%s) at %d", c.name, i, f.Name, f.Offset, m.name, want, m.off)
			}
		}
	}
	// The newer ioctls continue the 6.12 command numbering without a gap.
	if IOMMUFD_CMD_IOAS_MAP_FILE != IOMMUFD_CMD_FAULT_QUEUE_ALLOC+1 {
		t.Errorf("IOMMUFD_CMD_IOAS_MAP_FILE = %#x, want FAULT_QUEUE_ALLOC+1", IOMMUFD_CMD_IOAS_MAP_FILE)
	}
	if len(Since) != 21 { // 15 ioctls of the 6.12 header, 6 newer
		t.Errorf("Since has %d ioctls, want every iommufd ioctl (21)", len(Since))
	}
	for nr, v := range Since {
		if nr>>8 != IOMMUFD_TYPE || v == "" {
			t.Errorf("Since[%#x] = %q: not an iommufd ioctl with a version", nr, v)
		}
	}
}
