package kernel

import (
	"errors"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/vfioerr"
)

// MapError explains a failed DMA map (type1 MAP_DMA or iommufd IOAS_MAP):
// the errno, and what it means for the common ones. It runs only on the
// failure path.
func MapError(op, object, args string, err error) error {
	e := &vfioerr.OpError{Op: op, Object: object, Args: args, Err: err}
	switch {
	case errors.Is(err, unix.ENOMEM):
		e.Hint = "pinning would exceed RLIMIT_MEMLOCK: raise it (ulimit -l, or LimitMEMLOCK= in a systemd unit) or map less"
	case errors.Is(err, unix.EEXIST):
		e.Hint = "the range overlaps an existing mapping"
	case errors.Is(err, unix.EINVAL):
		e.Hint = "iova, size and address must be aligned to the IOMMU page size, and the range inside the IOVA ranges"
	}
	return e
}

// HeapBytes returns a zeroed n-byte slice on the heap. Buffers whose
// address the kernel reads from inside another struct (a uint64 field) must
// come from here: a stack buffer may move when the stack grows, and the
// kernel would follow the stale address. It is not inlined, so its result
// always escapes to the heap, where Go never moves memory.
//
//go:noinline
func HeapBytes(n int) []byte { return make([]byte, n) }
