package vfio

import "unsafe"

// store32 and store64 are one MOV each, a plain store as Linux's writel is
// on x86. sync/atomic's Store is an XCHG there: a locked read-modify-write
// that an emulator cannot perform on device memory as one access (QEMU's
// TCG stops every other vCPU to do it), and whose full barrier MMIO on
// x86 does not need: stores are not reordered with other stores, and
// device (uncached) accesses are not reordered with each other.
//
//go:noescape
func store32(p unsafe.Pointer, v uint32)

//go:noescape
func store64(p unsafe.Pointer, v uint64)
