//go:build !amd64

package vfio

import (
	"sync/atomic"
	"unsafe"
)

// store32 and store64 are sync/atomic's stores: on arm64 and ppc64le a
// store with a barrier, never a read-modify-write.
func store32(p unsafe.Pointer, v uint32) { atomic.StoreUint32((*uint32)(p), v) }

func store64(p unsafe.Pointer, v uint64) { atomic.StoreUint64((*uint64)(p), v) }
