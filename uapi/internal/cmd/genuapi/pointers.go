package main

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/vfioctl/vfioctl/internal/cabi"
)

// userPointers are the members through which the kernel reads or writes
// user memory. The headers declare most of them __aligned_u64, so the C
// types cannot tell them from a number: this table does, and they become
// uapi.Pointer fields, which keep their target alive and need no unsafe
// in callers.
var userPointers = map[string]map[string]bool{
	"iommu_ioas_iova_ranges":                  {"allowed_iovas": true},
	"iommu_ioas_allow_iovas":                  {"allowed_iovas": true},
	"iommu_ioas_map":                          {"user_va": true},
	"iommu_hw_info":                           {"data_uptr": true},
	"iommu_hwpt_alloc":                        {"data_uptr": true},
	"iommu_hwpt_get_dirty_bitmap":             {"data": true},
	"iommu_hwpt_invalidate":                   {"data_uptr": true},
	"vfio_iommu_type1_dma_map":                {"vaddr": true},
	"vfio_bitmap":                             {"data": true},
	"vfio_device_feature_dma_logging_control": {"ranges": true},
	"vfio_device_feature_dma_logging_report":  {"bitmap": true},
	"vfio_iommu_spapr_register_memory":        {"vaddr": true},
}

// pointerName is how the headers name user pointers: a member that
// matches it and is not in userPointers fails generation, so a new
// pointer-carrying struct cannot arrive as a plain number unnoticed.
var pointerName = regexp.MustCompile(`(^|_)(uptr|user_va|vaddr)$`)

// checkPointers: every listed member exists and is 8 bytes, and every
// member named like a pointer is listed.
func checkPointers(abi *cabi.ABI) error {
	seen := map[string]bool{}
	var errs []string
	for _, s := range abi.Structs {
		for _, f := range s.Fields {
			listed := userPointers[s.Name][f.Name]
			if listed {
				seen[s.Name+"."+f.Name] = true
				if f.Size != 8 {
					errs = append(errs, fmt.Sprintf("%s.%s is a user pointer of %d bytes, not 8", s.Name, f.Name, f.Size))
				}
			} else if pointerName.MatchString(f.Name) {
				errs = append(errs, fmt.Sprintf("%s.%s looks like a user pointer: list it in userPointers (or widen pointerName's exceptions)", s.Name, f.Name))
			}
		}
	}
	for st, fs := range userPointers {
		for f := range fs {
			if !seen[st+"."+f] {
				errs = append(errs, fmt.Sprintf("userPointers lists %s.%s, which the headers do not have", st, f))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("user pointers:\n\t%s", strings.Join(errs, "\n\t"))
	}
	return nil
}
