package pattern

import (
	"bytes"
	"testing"
)

// TestSlotsAreDistinct builds every slot's tag and data: no two slots, and
// no slot and the host, write the same bytes to the same block, and the
// slots lie end to end between SlotStart and ScratchStart.
func TestSlotsAreDistinct(t *testing.T) {
	tags := map[uint64]string{hostTag: "the host"}
	next := uint64(SlotStart)
	for _, s := range Slots {
		name := s.Test + " " + s.Part
		if other, dup := tags[s.Tag]; dup {
			t.Errorf("%s has the tag of %s (%#x)", name, other, s.Tag)
		}
		tags[s.Tag] = name
		if s.First != next || s.Blocks == 0 {
			t.Errorf("%s: blocks %d+%d, want to start at %d", name, s.First, s.Blocks, next)
		}
		next = s.First + s.Blocks
		if Find(s.Test, s.Part) != s {
			t.Errorf("Find(%q, %q) is another slot", s.Test, s.Part)
		}
	}
	if next > ScratchStart {
		t.Errorf("the slots end at block %d, past the scratch area's start %d", next, ScratchStart)
	}
	// The same block written by each slot and by the host: all differ.
	for _, blk := range []uint64{SlotStart, Blocks - 1} {
		seen := map[string]string{}
		host := make([]byte, BlockSize)
		Host(host, blk)
		seen[string(host)] = "the host"
		for _, s := range Slots {
			b := make([]byte, BlockSize)
			s.Guest(b, blk)
			if other, dup := seen[string(b)]; dup {
				t.Errorf("block %d: %s %s writes what %s writes", blk, s.Test, s.Part, other)
			}
			seen[string(b)] = s.Test + " " + s.Part
		}
	}
	// Within a slot, every block differs from its neighbours.
	s := Slots[0]
	a, b := make([]byte, BlockSize), make([]byte, BlockSize)
	s.Guest(a, s.First)
	s.Guest(b, s.First+1)
	if bytes.Equal(a, b) {
		t.Error("two blocks of one slot hold the same bytes")
	}
	if Mismatch(append(a, b...), s.First, s.Guest) != -1 || Mismatch(append(b, a...), s.First, s.Guest) != int64(s.First) {
		t.Error("Mismatch does not find a block swapped with its neighbour")
	}
}
