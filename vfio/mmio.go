package vfio

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// MMIO is an mmap-ed device region. Its loads and stores are single,
// naturally aligned accesses of the stated width, issued in program order:
// never split, merged or reordered by the compiler (they are atomic
// operations, which Go neither elides nor reorders).
type MMIO struct {
	mem []byte
}

// Len is the size of the mapping.
func (m *MMIO) Len() int { return len(m.mem) }

func (m *MMIO) ptr(off, width uintptr) unsafe.Pointer {
	if m.mem == nil {
		panic("vfio: MMIO used after Unmap")
	}
	if off%width != 0 || off+width > uintptr(len(m.mem)) || off+width < off {
		panic(fmt.Sprintf("vfio: MMIO access of %d bytes at %#x outside the %#x-byte mapping or unaligned", width, off, len(m.mem)))
	}
	return unsafe.Pointer(&m.mem[off])
}

// Load32 reads 4 bytes at off (aligned).
func (m *MMIO) Load32(off uintptr) uint32 { return atomic.LoadUint32((*uint32)(m.ptr(off, 4))) }

// Store32 writes 4 bytes at off (aligned).
func (m *MMIO) Store32(off uintptr, v uint32) { atomic.StoreUint32((*uint32)(m.ptr(off, 4)), v) }

// Load64 reads 8 bytes at off (aligned) in one access.
func (m *MMIO) Load64(off uintptr) uint64 { return atomic.LoadUint64((*uint64)(m.ptr(off, 8))) }

// Store64 writes 8 bytes at off (aligned) in one access.
func (m *MMIO) Store64(off uintptr, v uint64) { atomic.StoreUint64((*uint64)(m.ptr(off, 8)), v) }

// Unmap releases the mapping; later accesses panic.
func (m *MMIO) Unmap() error {
	if m.mem == nil {
		return errors.New("vfio: MMIO already unmapped")
	}
	err := unix.Munmap(m.mem)
	m.mem = nil
	return err
}
