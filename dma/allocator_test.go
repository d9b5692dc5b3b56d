package dma

import (
	"errors"
	"math"
	"os"
	"strings"
	"testing"
)

func TestAllocator(t *testing.T) {
	a, err := NewAllocator([]Range{{0x1000, 0xfffff}, {0x200000, 0x3fffff}}, 0x1000)
	if err != nil {
		t.Fatal(err)
	}
	iova, err := a.Reserve(0x1800) // rounds to 0x2000, aligned to 0x2000
	if err != nil || iova != 0x2000 {
		t.Fatalf("CreateBuffer(0x1800) = %#x, %v", iova, err)
	}
	big, err := a.Reserve(2 << 20) // only the second range fits, 2 MiB aligned
	if err != nil || big != 0x200000 {
		t.Fatalf("CreateBuffer(2MiB) = %#x, %v", big, err)
	}
	if _, err := a.Reserve(4 << 20); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("CreateBuffer(4MiB) = %v, want ErrNoSpace", err)
	}
	if err := a.Release(iova, 0x2000); err != nil {
		t.Fatal(err)
	}
	if err := a.Release(iova, 0x1000); err == nil {
		t.Fatal("double Free succeeded")
	}
	if got := a.Available(); len(got) != 1 || got[0] != (Range{0x1000, 0xfffff}) {
		t.Fatalf("free after Free = %v", got)
	}
	a.Limit(0x7fff)
	if got := a.Available(); len(got) != 1 || got[0].Last != 0x7fff {
		t.Fatalf("free after Limit = %v", got)
	}
	if _, err := NewAllocator(nil, 3); err == nil {
		t.Fatal("alignment 3 accepted")
	}
}

func TestAllocatorFullRange(t *testing.T) {
	a, err := NewAllocator([]Range{{0, ^uint64(0)}}, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if iova, err := a.Reserve(4096); err != nil || iova != 4096 { // page 0 is never handed out
		t.Fatalf("Alloc = %#x, %v", iova, err)
	}
}

func TestBuffer(t *testing.T) {
	b, err := CreateBuffer(100)
	if err != nil {
		t.Fatal(err)
	}
	if b.Len() != 4096 || b.Addr()%4096 != 0 {
		t.Fatalf("Len %d Addr %#x", b.Len(), b.Addr())
	}
	b.Bytes()[4095] = 1
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err == nil {
		t.Fatal("double Close succeeded")
	}
	if _, err := CreateBuffer(0); err == nil {
		t.Fatal("CreateBuffer(0) succeeded")
	}
}

func TestAllocatorRejectsBadFrees(t *testing.T) {
	a, err := NewAllocator([]Range{{0, ^uint64(0)}}, 4096)
	if err != nil {
		t.Fatal(err)
	}
	iova, err := a.Reserve(8192)
	if err != nil {
		t.Fatal(err)
	}
	before := a.Available()
	for _, c := range []struct {
		name       string
		iova, size uint64
	}{
		{"zero size", iova, 0},
		{"zero at zero", 0, 0},
		{"page 0", 0, 4096},
		{"unaligned", iova + 1, 4096},
		{"wraps", ^uint64(0) &^ 4095, 8192},
		{"huge size", iova, ^uint64(0)},
		{"already free", iova + 8192, 4096},
	} {
		if err := a.Release(c.iova, c.size); err == nil {
			t.Errorf("Free(%#x, %#x) (%s) succeeded", c.iova, c.size, c.name)
		}
		if got := a.Available(); !equalRanges(got, before) {
			t.Fatalf("%s changed the free ranges: %v, was %v", c.name, got, before)
		}
	}
	if _, err := a.Reserve(^uint64(0)); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Alloc(max) = %v, want ErrNoSpace", err)
	}
	limited, _ := NewAllocator([]Range{{0x1000, 0xfffff}}, 4096)
	if err := limited.Release(0x200000, 4096); err == nil {
		t.Fatal("freeing outside the managed ranges succeeded")
	}
}

func equalRanges(a, b []Range) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// PhysAddr reads a real frame number as root and refuses plainly otherwise.
func TestPhysAddr(t *testing.T) {
	b, err := CreateBuffer(8192)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	p, err := b.PhysAddr(4100)
	if os.Geteuid() != 0 {
		if err == nil {
			t.Fatalf("PhysAddr as uid %d = %#x, want the CAP_SYS_ADMIN error", os.Geteuid(), p)
		}
		return
	}
	if err != nil || p == 0 || p%4096 != 4 {
		t.Fatalf("PhysAddr(4100) = %#x, %v; want an address 4 bytes into its page", p, err)
	}
	if _, err := b.PhysAddr(8192); err == nil {
		t.Fatal("PhysAddr past the end succeeded")
	}
}

// TestAllocSizes: a size that is not positive, or whose rounding to whole
// pages overflows, is refused before mmap sees it.
func TestAllocSizes(t *testing.T) {
	for _, n := range []int{0, -1, math.MaxInt, math.MaxInt - 1} {
		if b, err := CreateBuffer(n); err == nil {
			b.Close()
			t.Errorf("Alloc(%d) succeeded", n)
		} else if n > 0 && !strings.Contains(err.Error(), "overflows") {
			t.Errorf("Alloc(%d): %v, want the overflow named", n, err)
		}
	}
}
