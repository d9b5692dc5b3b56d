package vfio

import (
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// MMIO is an mmap-ed device region. Its loads and stores are single,
// naturally aligned accesses of the stated width, issued in program order:
// never split, merged or reordered by the compiler (loads are atomic
// loads, stores one store instruction each, neither of which Go elides or
// reorders). A store is a plain store, as the kernel's writel: on amd64 an
// atomic store would be a locked exchange, which costs a device access a
// full barrier for nothing and which QEMU's TCG can only emulate on device
// memory by stopping every other vCPU. Accesses and Close
// are safe to race: Close waits for the accesses in flight, and an access
// after Close panics with ErrClosed (as an out-of-bounds or unaligned one
// panics), since a register access has no error to return.
type MMIO struct {
	mu   sync.RWMutex
	mem  []byte
	name string
}

// Len is the size of the mapping (0 after Close).
func (m *MMIO) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.mem)
}

// access runs fn on the address of [off, off+width) while the mapping is held.
func (m *MMIO) access(off, width uintptr, fn func(p unsafe.Pointer)) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.mem == nil {
		panic(kernel.Call{Op: "MMIO access", Object: m.name}.Fail(vfioerr.ErrClosed))
	}
	if off%width != 0 || !within(uint64(off), uint64(width), uint64(len(m.mem))) {
		panic(fmt.Sprintf("vfio: MMIO access of %d bytes at %#x outside the %#x-byte mapping of %s or unaligned", width, off, len(m.mem), m.name))
	}
	fn(unsafe.Pointer(&m.mem[off]))
}

// Load32 reads 4 bytes at off (aligned).
func (m *MMIO) Load32(off uintptr) (v uint32) {
	m.access(off, 4, func(p unsafe.Pointer) { v = atomic.LoadUint32((*uint32)(p)) })
	return v
}

// Store32 writes 4 bytes at off (aligned).
func (m *MMIO) Store32(off uintptr, v uint32) {
	m.access(off, 4, func(p unsafe.Pointer) { store32(p, v) })
}

// Load64 reads 8 bytes at off (aligned) in one access.
func (m *MMIO) Load64(off uintptr) (v uint64) {
	m.access(off, 8, func(p unsafe.Pointer) { v = atomic.LoadUint64((*uint64)(p)) })
	return v
}

// Store64 writes 8 bytes at off (aligned) in one access.
func (m *MMIO) Store64(off uintptr, v uint64) {
	m.access(off, 8, func(p unsafe.Pointer) { store64(p, v) })
}

// Close unmaps the region. A second Close fails with ErrClosed.
func (m *MMIO) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mem == nil {
		return kernel.Call{Op: "munmap", Object: m.name}.Fail(vfioerr.ErrClosed)
	}
	if err := unix.Munmap(m.mem); err != nil {
		return kernel.Call{Op: "munmap", Object: m.name}.Fail(err)
	}
	m.mem = nil
	return nil
}
