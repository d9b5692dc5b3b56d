package dma

import (
	"encoding/binary"
	"fmt"
	"os"
)

// PhysAddr is the physical address of byte off of the buffer, from
// /proc/self/pagemap: what a device DMAs to when there is no IOMMU (VFIO's
// no-IOMMU mode). Reading frame numbers needs CAP_SYS_ADMIN; the buffer's
// pages are populated and, as anonymous memory that is never swapped while
// in use for DMA here, stay where they are (lock them with mlock to be
// sure under memory pressure).
func (b *Buffer) PhysAddr(off int) (uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.mem == nil || off < 0 || off >= len(b.mem) {
		return 0, fmt.Errorf("dma: physical address of byte %d of a %d-byte buffer", off, len(b.mem))
	}
	page := uint64(os.Getpagesize())
	va := uint64(b.Addr()) + uint64(off)
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return 0, fmt.Errorf("dma: %w", err)
	}
	defer f.Close()
	var e [8]byte
	if _, err := f.ReadAt(e[:], int64(va/page*8)); err != nil {
		return 0, fmt.Errorf("dma: /proc/self/pagemap: %w", err)
	}
	v := binary.LittleEndian.Uint64(e[:])
	pfn := v & (1<<55 - 1)
	if v&(1<<63) == 0 {
		return 0, fmt.Errorf("dma: page of byte %d is not present", off)
	}
	if pfn == 0 {
		return 0, fmt.Errorf("dma: /proc/self/pagemap hides frame numbers: reading them needs CAP_SYS_ADMIN")
	}
	return pfn*page + va%page, nil
}
