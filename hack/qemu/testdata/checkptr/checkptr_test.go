// Package checkptr converts a pointer to a type larger than its allocation
// on purpose: a test binary built as the guest's are must die of checkptr.
package checkptr

import (
	"testing"
	"unsafe"
)

var (
	buf  = make([]uint64, 2)
	sink *[8]uint64
)

//go:noinline
func widen(p unsafe.Pointer) *[8]uint64 { return (*[8]uint64)(p) }

func TestStraddles(t *testing.T) {
	sink = widen(unsafe.Pointer(&buf[0]))
}
