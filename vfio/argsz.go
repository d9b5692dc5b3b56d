package vfio

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vfioctl/vfioctl/internal/kernel"
)

// growIoctl calls fn with a buffer whose first uint32 is argsz, growing it
// to the size the kernel asks for (VFIO's argsz protocol).
// The kernel writes the size it needs into argsz; the helpers set argsz to
// the buffer's length before each call.
func growIoctl(size uint32, fn func([]byte) error) ([]byte, error) {
	for try := 0; try < 4; try++ {
		buf := kernel.HeapBytes(int(size))
		if err := fn(buf); err != nil {
			return nil, err
		}
		need := binary.NativeEndian.Uint32(buf)
		if need <= size {
			return buf, nil
		}
		if need > 1<<20 {
			return nil, fmt.Errorf("vfio: kernel asks for a %d-byte info buffer", need)
		}
		size = need
	}
	return nil, errors.New("vfio: info buffer size kept changing")
}
