package dma_test

import (
	"fmt"

	"github.com/vfioctl/vfioctl/dma"
)

// Hand out IOVAs within what an IOMMU reports: here two ranges around an
// MSI window, 4 KiB granule, limited to a device's 28-bit DMA mask.
func ExampleAllocator() {
	a, _ := dma.NewAllocator([]dma.Range{{Start: 0, Last: 0xfedfffff}, {Start: 0xfef00000, Last: 0x7fffffffff}}, 4096)
	a.Limit(1<<28 - 1)
	small, _ := a.Reserve(8192)
	huge, _ := a.Reserve(2 << 20) // 2 MiB-aligned, for huge page mappings
	fmt.Printf("%#x %#x\n", small, huge)
	// Output: 0x2000 0x200000
}
