package dma

import "fmt"

// Perm is what the device may do with a mapping.
type Perm uint8

const (
	Read      Perm = 1 << iota // the device may read (DMA to the device)
	Write                      // the device may write (DMA from the device)
	ReadWrite = Read | Write
)

func (p Perm) String() string {
	switch p {
	case Read:
		return "r"
	case Write:
		return "w"
	case ReadWrite:
		return "rw"
	}
	return fmt.Sprintf("Perm(%d)", uint8(p))
}

// Range is an inclusive interval of IOVAs.
type Range struct {
	Start, Last uint64
}

func (r Range) String() string { return fmt.Sprintf("[%#x-%#x]", r.Start, r.Last) }

// Mapper maps process memory into a device's I/O address space. The legacy
// type1 container, an iommufd used as a container and a native IOAS all
// implement it; Map and Unmap do not allocate.
type Mapper interface {
	// Map makes mem visible to the device at iova. mem must be page
	// aligned, stay mapped in the process until Unmap, and be memory that
	// never moves: a Buffer, an mmap, or the Go heap, never a goroutine's
	// stack.
	Map(iova uint64, mem []byte, perm Perm) error
	// Unmap removes the mapping of [iova, iova+size).
	Unmap(iova, size uint64) error
	// UnmapAll removes every mapping and returns the bytes unmapped.
	UnmapAll() (uint64, error)
	// IOVARanges are the IOVAs that may be mapped.
	IOVARanges() ([]Range, error)
	// Alignment is the smallest IOVA and length granule (a power of two).
	Alignment() (uint64, error)
}

// NewAllocatorFor builds an Allocator from what m reports.
func NewAllocatorFor(m Mapper) (*Allocator, error) {
	ranges, err := m.IOVARanges()
	if err != nil {
		return nil, err
	}
	align, err := m.Alignment()
	if err != nil {
		return nil, err
	}
	return NewAllocator(ranges, align)
}
