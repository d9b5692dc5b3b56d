package vfio

import (
	"errors"
	"math/bits"
	"testing"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"golang.org/x/sys/unix"
)

// FuzzRegionRanges: whatever offset and length reach a region (ReadAt,
// WriteAt, MapRange) or a mapping of one (MMIO access), what is accepted
// lies inside it; what is refused is EINVAL, before the kernel sees it.
func FuzzRegionRanges(f *testing.F) {
	f.Add(uint64(4096), int64(4095), 2)
	f.Add(uint64(1<<20), int64(-1), 1)
	f.Add(uint64(256), int64(1<<62), 1<<62)
	f.Add(^uint64(0), int64(9223372036854775807), 9223372036854775807)
	fd, err := kernel.OpenPath("/dev/null", nil)
	if err != nil {
		f.Fatal(err)
	}
	defer fd.Close()
	dev := &Device{fd: fd}
	f.Fuzz(func(t *testing.T, size uint64, off int64, n int) {
		inside := func(o, m uint64) bool {
			end, carry := bits.Add64(o, m, 0)
			return carry == 0 && end <= size
		}
		r := &Region{dev: dev, Size: size}
		if err := r.check("read", off, n); err == nil {
			if off < 0 || n < 0 || !inside(uint64(off), uint64(n)) {
				t.Fatalf("region of %#x bytes: %d bytes at %#x accepted", size, n, off)
			}
		} else if !errors.Is(err, unix.EINVAL) {
			t.Fatalf("check: %v, want EINVAL", err)
		}
		if within(uint64(off), uint64(n), size) != inside(uint64(off), uint64(n)) {
			t.Fatalf("within(%#x, %#x, %#x) = %v", uint64(off), uint64(n), size, !inside(uint64(off), uint64(n)))
		}
	})
}
