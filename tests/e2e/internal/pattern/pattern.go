// Package pattern is the data layout of the nvme backing image that the
// host test writes before a boot and checks after it, and the guest tests
// read and write in between: every 512-byte block says who wrote it and
// which block it is, so a read from the wrong block, a lost write or a
// write to the wrong place shows. Every guest subtest that writes has a
// slot of its own, with data no other slot has.
package pattern

import (
	"encoding/binary"
	"fmt"
)

// Layout of the 64 MiB image, in 512-byte blocks.
const (
	BlockSize    = 512
	ImageSize    = 64 << 20
	Blocks       = ImageSize / BlockSize
	SlotStart    = 32 << 20 / BlockSize // [0, SlotStart): the host's, read by the guest, never written
	ScratchStart = 56 << 20 / BlockSize // [ScratchStart, Blocks): any test may write; not checked
)

// Modes are the guest test modes (tests/e2e/guest's mode names) that
// drive the nvme.
var Modes = []string{"vfio_type1_iommu", "vfio_type1v2_iommu", "iommufd_compat_type1", "iommufd_compat_type1v2", "group_iommufd", "iommufd"}

// Completions are the ways a subtest waits for its commands.
var Completions = []string{"polled", "msix"}

// DriverSizes are the transfers TestNVMeDriver writes in each mode and
// completion, each to a part of its own, alternating between I/O queues 0
// and 1; the last is QEMU's nvme's largest (MDTS 7 with 4 KiB pages).
var DriverSizes = []int{512, 8192, 64 << 10, 512 << 10}

// IntegrityBlocks is what TestNVMeIntegrity writes in each mode,
// completion and I/O queue.
const IntegrityBlocks = 256

// Slot is a range of blocks that one guest subtest writes, with a tag
// that no other slot (nor the host) uses.
type Slot struct {
	Test   string // the guest subtest whose PASS says the slot holds its data
	Part   string // which of the subtest's writes ("q0", "8192 bytes")
	First  uint64 // first block
	Blocks uint64
	Tag    uint64
}

// Slots lists every writing subtest's slots, end to end from SlotStart:
// TestNVMeIntegrity/MODE/COMPLETION on each of two I/O queues, and
// TestNVMeDriver/MODE/COMPLETION for each of DriverSizes.
var Slots = func() []Slot {
	var out []Slot
	next := uint64(SlotStart)
	add := func(test, part string, blocks uint64) {
		// The slot's number sits in bits 25-31 of the tag, which neither
		// the block number (bits 8-24) nor the word (bits 0-5) reaches.
		out = append(out, Slot{Test: test, Part: part, First: next, Blocks: blocks, Tag: guestTag | uint64(len(out)+1)<<25})
		next += blocks
	}
	for _, m := range Modes {
		for _, c := range Completions {
			for q := 0; q < 2; q++ {
				add("TestNVMeIntegrity/"+m+"/"+c, fmt.Sprintf("q%d", q), IntegrityBlocks)
			}
			for _, size := range DriverSizes {
				add("TestNVMeDriver/"+m+"/"+c, fmt.Sprintf("%d bytes", size), uint64(size/BlockSize))
			}
		}
	}
	return out
}()

// Find is the slot of a subtest's part; it panics on one Slots lacks.
func Find(test, part string) Slot {
	for _, s := range Slots {
		if s.Test == test && s.Part == part {
			return s
		}
	}
	panic("pattern: no slot for " + test + " " + part)
}

const (
	hostTag  = 0x486f7374 << 32 // "Host"
	guestTag = 0x47756573 << 32 // "Gues"
)

// Host fills b (whole blocks, starting at block first) with what the host
// writes before the boot.
func Host(b []byte, first uint64) { fill(b, first, hostTag) }

// Guest fills b (whole blocks, starting at block first) with slot s's data.
func (s Slot) Guest(b []byte, first uint64) { fill(b, first, s.Tag) }

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
