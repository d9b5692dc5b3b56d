package guest

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"github.com/vfioctl/vfioctl/uapi"
	"golang.org/x/sys/unix"
)

// A minimal io_uring (Linux 5.1+, IORING_OP_READ 5.6+) for the kernel side
// of the NVMe benchmark: reads at a real queue depth, not threads.

type ioSqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Flags, Dropped, Array, Resv1 uint32
	UserAddr                                                        uint64
}

type ioCqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Overflow, Cqes, Flags, Resv1 uint32
	UserAddr                                                        uint64
}

type ioUringParams struct {
	SqEntries, CqEntries, Flags, SqThreadCPU, SqThreadIdle, Features, WqFd uint32
	Resv                                                                   [3]uint32
	SqOff                                                                  ioSqringOffsets
	CqOff                                                                  ioCqringOffsets
}

type ioUringSqe struct {
	Opcode      uint8
	Flags       uint8
	Ioprio      uint16
	Fd          int32
	Off         uint64
	Addr        uint64
	Len         uint32
	RwFlags     uint32
	UserData    uint64
	BufIndex    uint16
	Personality uint16
	SpliceFdIn  int32
	Addr3       uint64
	_           uint64
}

type ioUringCqe struct {
	UserData uint64
	Res      int32
	Flags    uint32
}

const (
	ioringOpRead         = 22
	ioringOpWrite        = 23
	ioringEnterGetevents = 1
	ioringOffSqRing      = 0
	ioringOffCqRing      = 0x8000000
	ioringOffSqes        = 0x10000000
	ioringFeatSingleMmap = 1
	sizeofIoUringParams  = 120
	sizeofIoUringSqe     = 64
	sizeofIoUringCqe     = 16
)

// ring is one io_uring instance.
type ring struct {
	fd                 int
	sqMem, cqMem, sqes []byte
	sqHead, sqTail     *uint32
	sqMask             uint32
	sqArray            []uint32
	cqHead, cqTail     *uint32
	cqMask             uint32
	cqes               []ioUringCqe
	sqeSlice           []ioUringSqe
	pending            uint32 // queued, not yet entered
}

func newRing(entries uint32) (*ring, error) {
	var p ioUringParams
	if unsafe.Sizeof(p) != sizeofIoUringParams || unsafe.Sizeof(ioUringSqe{}) != sizeofIoUringSqe || unsafe.Sizeof(ioUringCqe{}) != sizeofIoUringCqe {
		return nil, fmt.Errorf("io_uring layouts: %d %d %d", unsafe.Sizeof(p), unsafe.Sizeof(ioUringSqe{}), unsafe.Sizeof(ioUringCqe{}))
	}
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w (CONFIG_IO_URING?)", errno)
	}
	r := &ring{fd: int(fd)}
	sqSize := int(p.SqOff.Array + p.SqEntries*4)
	cqSize := int(p.CqOff.Cqes + p.CqEntries*sizeofIoUringCqe)
	if p.Features&ioringFeatSingleMmap != 0 {
		sqSize = max(sqSize, cqSize)
	}
	var err error
	if r.sqMem, err = unix.Mmap(r.fd, ioringOffSqRing, sqSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return nil, err
	}
	r.cqMem = r.sqMem
	if p.Features&ioringFeatSingleMmap == 0 {
		if r.cqMem, err = unix.Mmap(r.fd, ioringOffCqRing, cqSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
			return nil, err
		}
	}
	if r.sqes, err = unix.Mmap(r.fd, ioringOffSqes, int(p.SqEntries*sizeofIoUringSqe), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return nil, err
	}
	u32 := func(mem []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&mem[off])) }
	r.sqHead, r.sqTail, r.sqMask = u32(r.sqMem, p.SqOff.Head), u32(r.sqMem, p.SqOff.Tail), *u32(r.sqMem, p.SqOff.RingMask)
	r.sqArray = unsafe.Slice(u32(r.sqMem, p.SqOff.Array), p.SqEntries)
	r.cqHead, r.cqTail, r.cqMask = u32(r.cqMem, p.CqOff.Head), u32(r.cqMem, p.CqOff.Tail), *u32(r.cqMem, p.CqOff.RingMask)
	r.cqes = unsafe.Slice((*ioUringCqe)(unsafe.Pointer(&r.cqMem[p.CqOff.Cqes])), p.CqEntries)
	r.sqeSlice = unsafe.Slice((*ioUringSqe)(unsafe.Pointer(&r.sqes[0])), p.SqEntries)
	return r, nil
}

// rw queues a read (ioringOpRead) or write (ioringOpWrite) of buf at off
// of fd, tagged with tag.
func (r *ring) rw(op uint8, fd int, buf []byte, off uint64, tag uint64) {
	tail := atomic.LoadUint32(r.sqTail)
	i := tail & r.sqMask
	r.sqeSlice[i] = ioUringSqe{Opcode: op, Fd: int32(fd), Off: off, Addr: uint64(uapi.SlicePointer(buf).Addr()), Len: uint32(len(buf)), UserData: tag}
	r.sqArray[i] = i
	atomic.StoreUint32(r.sqTail, tail+1)
	r.pending++
}

// enter submits what is queued and waits for at least min completions.
func (r *ring) enter(min uint32) error {
	for {
		n, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(r.pending), uintptr(min), ioringEnterGetevents, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return fmt.Errorf("io_uring_enter: %w", errno)
		}
		r.pending -= uint32(n)
		return nil
	}
}

// reap calls fn for each completion.
func (r *ring) reap(fn func(tag uint64, res int32)) int {
	head := atomic.LoadUint32(r.cqHead)
	tail := atomic.LoadUint32(r.cqTail)
	for h := head; h != tail; h++ {
		c := &r.cqes[h&r.cqMask]
		fn(c.UserData, c.Res)
	}
	atomic.StoreUint32(r.cqHead, tail)
	return int(tail - head)
}

func (r *ring) close() {
	unix.Munmap(r.sqes)
	if &r.cqMem[0] != &r.sqMem[0] {
		unix.Munmap(r.cqMem)
	}
	unix.Munmap(r.sqMem)
	unix.Close(r.fd)
}
