package dma

import (
	"errors"
	"fmt"
	"math/bits"
	"sort"
)

// ErrNoSpace is returned when no free IOVA range is large enough.
var ErrNoSpace = errors.New("dma: no free IOVA range large enough")

// Allocator hands out IOVAs within a set of ranges, first fit, aligned to
// the IOMMU's granule (and to the size's own power of two up to 2 MiB, so
// huge mappings get huge IOVA alignment). It never hands out the first
// granule, so a zeroed descriptor never points at live memory. It is not
// safe for concurrent use.
type Allocator struct {
	align   uint64
	managed []Range // what it may hand out: sorted, disjoint, coalesced
	free    []Range // the part of managed not handed out
}

// NewAllocator manages the given ranges at the given alignment (a power of
// two; 0 or 1 means byte granular).
func NewAllocator(ranges []Range, align uint64) (*Allocator, error) {
	if align == 0 {
		align = 1
	}
	if bits.OnesCount64(align) != 1 {
		return nil, fmt.Errorf("dma: alignment %#x is not a power of two", align)
	}
	a := &Allocator{align: align}
	for _, r := range ranges {
		if r.Last < r.Start {
			return nil, fmt.Errorf("dma: range %v is empty", r)
		}
		a.insert(r)
	}
	a.carve(Range{0, align - 1})
	a.managed = a.Available()
	return a, nil
}

// Limit removes every IOVA above last (e.g. a device's DMA mask).
func (a *Allocator) Limit(last uint64) {
	a.free = limit(a.free, last)
	a.managed = limit(a.managed, last)
}

func limit(rs []Range, last uint64) []Range {
	var out []Range
	for _, r := range rs {
		if r.Start > last {
			continue
		}
		if r.Last > last {
			r.Last = last
		}
		out = append(out, r)
	}
	return out
}

// Reserve reserves size bytes and returns the IOVA.
func (a *Allocator) Reserve(size uint64) (uint64, error) {
	if size == 0 {
		return 0, errors.New("dma: zero-size IOVA allocation")
	}
	rounded := (size + a.align - 1) &^ (a.align - 1)
	if rounded < size {
		return 0, fmt.Errorf("%w: %#x bytes overflow the address space", ErrNoSpace, size)
	}
	size = rounded
	align := a.align
	for align < size && align < hugePage {
		align <<= 1
	}
	for i, r := range a.free {
		start := (r.Start + align - 1) &^ (align - 1)
		if start < r.Start || start > r.Last || r.Last-start < size-1 {
			continue
		}
		// Split r around [start, start+size-1].
		var repl []Range
		if start > r.Start {
			repl = append(repl, Range{r.Start, start - 1})
		}
		if end := start + size - 1; end < r.Last {
			repl = append(repl, Range{end + 1, r.Last})
		}
		a.free = append(a.free[:i], append(repl, a.free[i+1:]...)...)
		return start, nil
	}
	return 0, fmt.Errorf("%w: %d bytes (free: %v)", ErrNoSpace, size, a.free)
}

// Release returns [iova, iova+size) to the allocator: what Reserve handed out.
// A zero size, a range that wraps past the top of the address space, an
// IOVA not on the allocator's alignment, or a range that is (partly) free
// already is refused and changes nothing.
func (a *Allocator) Release(iova, size uint64) error {
	if size == 0 {
		return fmt.Errorf("dma: freeing zero bytes at %#x", iova)
	}
	if iova%a.align != 0 {
		return fmt.Errorf("dma: freeing %#x, which is not aligned to %#x", iova, a.align)
	}
	rounded := (size + a.align - 1) &^ (a.align - 1)
	if rounded < size || iova+rounded-1 < iova {
		return fmt.Errorf("dma: freeing %#x bytes at %#x overflows the address space", size, iova)
	}
	r := Range{iova, iova + rounded - 1}
	inside := false
	for _, m := range a.managed {
		inside = inside || (m.Start <= r.Start && r.Last <= m.Last)
	}
	if !inside {
		return fmt.Errorf("dma: freeing %v, which the allocator never handed out (it manages %v)", r, a.managed)
	}
	for _, f := range a.free {
		if r.Start <= f.Last && f.Start <= r.Last {
			return fmt.Errorf("dma: freeing %v, which overlaps free range %v", r, f)
		}
	}
	a.insert(r)
	return nil
}

// reserve removes r from the free ranges.
func (a *Allocator) carve(r Range) {
	var out []Range
	for _, f := range a.free {
		if f.Last < r.Start || f.Start > r.Last {
			out = append(out, f)
			continue
		}
		if f.Start < r.Start {
			out = append(out, Range{f.Start, r.Start - 1})
		}
		if f.Last > r.Last {
			out = append(out, Range{r.Last + 1, f.Last})
		}
	}
	a.free = out
}

// Available is the unreserved space, for reports.
func (a *Allocator) Available() []Range { return append([]Range(nil), a.free...) }

func (a *Allocator) insert(r Range) {
	a.free = append(a.free, r)
	sort.Slice(a.free, func(i, j int) bool { return a.free[i].Start < a.free[j].Start })
	out := a.free[:1]
	for _, x := range a.free[1:] {
		last := &out[len(out)-1]
		if last.Last != ^uint64(0) && x.Start <= last.Last+1 {
			if x.Last > last.Last {
				last.Last = x.Last
			}
			continue
		}
		out = append(out, x)
	}
	a.free = out
}
