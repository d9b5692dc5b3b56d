package uapi

import "unsafe"

// Pointer is a user pointer inside an ioctl argument: a field the kernel
// declares __aligned_u64 (or __u64 __user *) and reads memory through, such
// as IommuIoasMap.UserVa or VfioIommuType1DmaMap.Vaddr. It holds a Go
// pointer, so the garbage collector keeps its target alive as long as the
// struct is, and callers convert nothing to an integer: build one with
// SlicePointer. It is 8 bytes on every 64-bit ABI (TestABI checks every
// such field's size and offset against C).
type Pointer struct {
	ptr unsafe.Pointer
}

// SlicePointer points at the first element of s; an empty s gives the
// null pointer.
func SlicePointer[T any](s []T) Pointer {
	if len(s) == 0 {
		return Pointer{}
	}
	return Pointer{unsafe.Pointer(unsafe.SliceData(s))}
}

// ValuePointer points at *v.
func ValuePointer[T any](v *T) Pointer { return Pointer{unsafe.Pointer(v)} }

// Addr is the address the kernel will read, for messages and page
// lookups. Do not turn it back into a pointer.
func (p Pointer) Addr() uintptr { return uintptr(p.ptr) }

// IsNull reports whether p points nowhere.
func (p Pointer) IsNull() bool { return p.ptr == nil }

// A Pointer must be laid out as the kernel's __aligned_u64.
var _ [8 - unsafe.Sizeof(Pointer{})]struct{}
var _ [unsafe.Sizeof(Pointer{}) - 8]struct{}

// PageSpan points at the first of the whole pages (of pageSize, a power of
// two) that hold the non-empty mem, and says how many bytes they span: a
// SPAPR TCE registration covers whole system pages. mem should be memory
// Go does not manage (mmap-ed, as dma.Buffer's is): the rounded pointer
// may leave a Go object's bounds.
func PageSpan(mem []byte, pageSize uintptr) (Pointer, uint64) {
	p := unsafe.Pointer(unsafe.SliceData(mem))
	lead := uintptr(p) & (pageSize - 1)
	n := (lead + uintptr(len(mem)) + pageSize - 1) &^ (pageSize - 1)
	return Pointer{unsafe.Add(p, -int(lead))}, uint64(n)
}
