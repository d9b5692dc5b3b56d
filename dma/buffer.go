package dma

import (
	"fmt"
	"math"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// Buffer is page-aligned memory outside the Go heap, suitable for DMA.
// Close is safe to call from any goroutine; the first unmaps, later ones
// fail with vfioerr.ErrClosed. Bytes must not be used after Close.
type Buffer struct {
	mu   sync.Mutex
	mem  []byte
	huge bool
}

// CreateBuffer maps size bytes (rounded up to the page size) of anonymous memory.
func CreateBuffer(size int) (*Buffer, error) { return alloc(size, 0) }

// CreateHugeBuffer maps size bytes backed by 2 MiB huge pages (size is rounded up
// to 2 MiB). It needs pages reserved in /proc/sys/vm/nr_hugepages.
func CreateHugeBuffer(size int) (*Buffer, error) {
	return alloc(size, unix.MAP_HUGETLB|21<<unix.MAP_HUGE_SHIFT)
}

const hugePage = 2 << 20

func alloc(size, flags int) (*Buffer, error) {
	if size <= 0 {
		return nil, fmt.Errorf("dma: buffer size %d must be positive", size)
	}
	unit := os.Getpagesize()
	if flags&unix.MAP_HUGETLB != 0 {
		unit = hugePage
	}
	if size > math.MaxInt-unit {
		return nil, fmt.Errorf("dma: buffer size %d: rounding it up to whole %d-byte pages overflows", size, unit)
	}
	size = (size + unit - 1) &^ (unit - 1)
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE|flags)
	if err != nil {
		c := kernel.Call{Op: "mmap", Object: "dma buffer", Args: fmt.Sprintf("%d bytes", size)}
		if flags&unix.MAP_HUGETLB != 0 {
			c.Args += " of 2 MiB huge pages"
			c.Hints = hugePageHints
		}
		return nil, c.Fail(err)
	}
	return &Buffer{mem: mem, huge: flags&unix.MAP_HUGETLB != 0}, nil
}

var hugePageHints = kernel.Hints{unix.ENOMEM: kernel.Say("not enough huge pages reserved: echo N > /proc/sys/vm/nr_hugepages")}

// Bytes is the buffer's memory; valid until Close.
func (b *Buffer) Bytes() []byte { return b.mem }

// Len is the buffer's size in bytes.
func (b *Buffer) Len() int { return len(b.mem) }

// Addr is the buffer's virtual address.
func (b *Buffer) Addr() uintptr {
	if len(b.mem) == 0 {
		return 0
	}
	return uintptr(unsafe.Pointer(&b.mem[0]))
}

// Huge reports whether the buffer is backed by huge pages.
func (b *Buffer) Huge() bool { return b.huge }

// Close unmaps the buffer. Unmap it from every IOMMU first.
func (b *Buffer) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.mem == nil {
		return kernel.Call{Op: "munmap", Object: "dma buffer"}.Fail(vfioerr.ErrClosed)
	}
	if err := unix.Munmap(b.mem); err != nil {
		return kernel.Call{Op: "munmap", Object: "dma buffer", Args: fmt.Sprintf("%d bytes", len(b.mem))}.Fail(err)
	}
	b.mem = nil
	return nil
}
