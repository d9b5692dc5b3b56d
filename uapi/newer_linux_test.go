package uapi

import (
	"testing"
	"unsafe"
)

// The post-6.12 ABI cannot be compiled against the 6.12 headers, so its
// layouts are checked against the sizes and offsets the mainline header
// gives (every field of every struct).
func TestNewerABI(t *testing.T) {
	type field struct {
		name      string
		off, want uintptr
	}
	for _, c := range []struct {
		name       string
		size, want uintptr
		fields     []field
	}{
		{"iommu_ioas_map_file", unsafe.Sizeof(IommuIoasMapFile{}), 40, []field{
			{"fd", unsafe.Offsetof(IommuIoasMapFile{}.Fd), 12},
			{"start", unsafe.Offsetof(IommuIoasMapFile{}.Start), 16},
			{"length", unsafe.Offsetof(IommuIoasMapFile{}.Length), 24},
			{"iova", unsafe.Offsetof(IommuIoasMapFile{}.Iova), 32}}},
		{"iommu_viommu_alloc", unsafe.Sizeof(IommuViommuAlloc{}), 40, []field{
			{"out_viommu_id", unsafe.Offsetof(IommuViommuAlloc{}.OutViommuId), 20},
			{"data_len", unsafe.Offsetof(IommuViommuAlloc{}.DataLen), 24},
			{"data_uptr", unsafe.Offsetof(IommuViommuAlloc{}.DataUptr), 32}}},
		{"iommu_vdevice_alloc", unsafe.Sizeof(IommuVdeviceAlloc{}), 24, []field{
			{"out_vdevice_id", unsafe.Offsetof(IommuVdeviceAlloc{}.OutVdeviceId), 12},
			{"virt_id", unsafe.Offsetof(IommuVdeviceAlloc{}.VirtId), 16}}},
		{"iommu_ioas_change_process", unsafe.Sizeof(IommuIoasChangeProcess{}), 8, nil},
		{"iommu_veventq_alloc", unsafe.Sizeof(IommuVeventqAlloc{}), 32, []field{
			{"veventq_depth", unsafe.Offsetof(IommuVeventqAlloc{}.VeventqDepth), 16},
			{"out_veventq_fd", unsafe.Offsetof(IommuVeventqAlloc{}.OutVeventqFd), 24}}},
		{"iommufd_vevent_header", unsafe.Sizeof(IommufdVeventHeader{}), 8, nil},
		{"iommu_hw_queue_alloc", unsafe.Sizeof(IommuHwQueueAlloc{}), 40, []field{
			{"out_hw_queue_id", unsafe.Offsetof(IommuHwQueueAlloc{}.OutHwQueueId), 20},
			{"nesting_parent_iova", unsafe.Offsetof(IommuHwQueueAlloc{}.NestingParentIova), 24},
			{"length", unsafe.Offsetof(IommuHwQueueAlloc{}.Length), 32}}},
		{"iommu_hw_info_arm_smmuv3", unsafe.Sizeof(IommuHwInfoArmSmmuv3{}), 40, []field{
			{"idr", unsafe.Offsetof(IommuHwInfoArmSmmuv3{}.Idr), 8},
			{"iidr", unsafe.Offsetof(IommuHwInfoArmSmmuv3{}.Iidr), 32},
			{"aidr", unsafe.Offsetof(IommuHwInfoArmSmmuv3{}.Aidr), 36}}},
		{"iommu_hw_info_amd", unsafe.Sizeof(IommuHwInfoAmd{}), 16, nil},
	} {
		if c.size != c.want {
			t.Errorf("sizeof(struct %s) = %d, want %d", c.name, c.size, c.want)
		}
		for _, f := range c.fields {
			if f.off != f.want {
				t.Errorf("offsetof(struct %s, %s) = %d, want %d", c.name, f.name, f.off, f.want)
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
