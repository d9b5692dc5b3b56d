//go:build ppc64 || ppc64le

package vfio

import (
	"bufio"
	"os"
	"strings"
	"sync"
)

// spaprPlatform: on POWER the only IOMMU VFIO drives is SPAPR TCE, which
// allocates no iommufd paging domain, and the kernel builds no device cdev
// (VFIO_DEVICE_CDEV depends on !SPAPR_TCE_IOMMU).
const spaprPlatform = true

// pseries reports whether Linux runs as a pSeries (PAPR) guest, where
// the hypervisor owns each PE's DMA windows, rather than on PowerNV
// (bare metal), where one window table can serve several groups.
var pseries = sync.OnceValue(func() bool {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "platform" {
			return strings.TrimSpace(v) == "pSeries"
		}
	}
	return false
})
