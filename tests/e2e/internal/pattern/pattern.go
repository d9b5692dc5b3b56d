// Package pattern is the data layout of the nvme backing image that the
// host test writes before a boot and checks after it, and the guest tests
// read and write in between: every 512-byte block says who wrote it and
// which block it is, so a read from the wrong block, a lost write or a
// write to the wrong place shows.
package pattern

import "encoding/binary"

// Layout of the 64 MiB image, in 512-byte blocks.
const (
	BlockSize    = 512
	ImageSize    = 64 << 20
	Blocks       = ImageSize / BlockSize
	ScratchStart = 56 << 20 / BlockSize // [ScratchStart, Blocks): any test may write; not checked
	WriteStart   = 48 << 20 / BlockSize // slot k: [WriteStart+k*SlotBlocks, +SlotBlocks), written by the guest
	SlotBlocks   = 256
)

// SlotModes names the guest test mode (TestNVMeIntegrity/NAME) that
// writes each slot.
var SlotModes = []string{"vfio_type1_iommu", "vfio_type1v2_iommu", "iommufd_compat_type1", "iommufd_compat_type1v2", "group_iommufd", "iommufd"}

// Slot is the slot of a mode, or -1.
func Slot(mode string) int {
	for i, m := range SlotModes {
		if m == mode {
			return i
		}
	}
	return -1
}

const (
	hostTag  = 0x486f7374 << 32 // "Host"
	guestTag = 0x47756573 << 32 // "Gues"
)

// Host fills b (whole blocks, starting at block first) with what the host
// writes before the boot.
func Host(b []byte, first uint64) { fill(b, first, hostTag) }

// Guest fills b with what the guest writes into slot.
func Guest(b []byte, first uint64, slot int) { fill(b, first, guestTag|uint64(slot)<<40) }

func fill(b []byte, first, tag uint64) {
	for i := 0; i+8 <= len(b); i += 8 {
		blk := first + uint64(i/BlockSize)
		binary.LittleEndian.PutUint64(b[i:], tag^blk<<8^uint64(i%BlockSize/8))
	}
}

// Mismatch returns the first block of b (starting at block first) that
// differs from what fill would write with want, or -1.
func Mismatch(b []byte, first uint64, want func([]byte, uint64)) int64 {
	exp := make([]byte, BlockSize)
	for off := 0; off+BlockSize <= len(b); off += BlockSize {
		blk := first + uint64(off/BlockSize)
		want(exp, blk)
		for i := range exp {
			if exp[i] != b[off+i] {
				return int64(blk)
			}
		}
	}
	return -1
}
