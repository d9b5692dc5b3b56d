package kernel

// HeapBytes returns a zeroed n-byte slice on the heap, for a buffer the
// kernel fills or reads as a whole (an argsz-sized ioctl argument). It is
// not inlined, so its result always escapes to the heap, where Go never
// moves memory. Buffers the kernel reads through a pointer inside another
// struct are held by a uapi.Pointer field instead, which keeps them alive.
//
//go:noinline
func HeapBytes(n int) []byte { return make([]byte, n) }
