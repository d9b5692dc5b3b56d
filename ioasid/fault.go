package ioasid

import (
	"fmt"
	"time"
	"unsafe"

	"github.com/vfioctl/vfioctl/uapi"
)

// FaultQueue is an iommufd fault object (IOMMU_FAULT_QUEUE_ALLOC, Linux
// 6.11): I/O page faults of HWPTs allocated with it are read from its fd,
// and answered by writing page responses. Close ends a Read in progress.
type FaultQueue struct {
	object
	q *queue
}

// AllocFaultQueue is IOMMU_FAULT_QUEUE_ALLOC.
func (f *FD) AllocFaultQueue() (*FaultQueue, error) {
	var a uapi.IommuFaultAlloc
	if err := f.fd.Ioctl(call("IOMMU_FAULT_QUEUE_ALLOC", uapi.IOMMU_FAULT_QUEUE_ALLOC, ""), func(fd int) error { return uapi.IoctlIommuFaultQueueAlloc(fd, &a) }); err != nil {
		return nil, err
	}
	q, err := newQueue(int(a.OutFaultFd), fmt.Sprintf("iommufd fault queue %d", a.OutFaultId))
	if err != nil {
		f.Destroy(a.OutFaultId)
		return nil, err
	}
	return &FaultQueue{object: object{fd: f, kind: "fault queue", id: a.OutFaultId}, q: q}, nil
}

// ID is the fault object's id.
func (q *FaultQueue) ID() uint32 { return q.id }

// Fault is one I/O page fault record (struct iommu_hwpt_pgfault): a
// device's access at Addr that the HWPT did not translate.
type Fault struct {
	Flags  uint32 // uapi.IOMMU_PGFAULT_FLAGS_*: PASID valid, last page of its group
	DevID  uint32 // the iommufd device id
	PASID  uint32
	Group  uint32 // the page request group; one response answers it
	Perm   uint32 // uapi.IOMMU_PGFAULT_PERM_*
	Addr   uint64
	Length uint32
	Cookie uint32 // what Respond names
}

// Read reads the fault records available, waiting at most timeout for the
// first (0: until one arrives or the queue is closed); none on timeout.
func (q *FaultQueue) Read(max int, timeout time.Duration) ([]Fault, error) {
	size := int(unsafe.Sizeof(uapi.IommuHwptPgfault{}))
	buf := make([]byte, size*max)
	n, err := q.q.read(buf, timeout)
	if err != nil {
		return nil, err
	}
	out := make([]Fault, n/size)
	for i := range out {
		r, err := uapi.Decode[uapi.IommuHwptPgfault](buf[i*size : n])
		if err != nil {
			return out[:i], err
		}
		out[i] = Fault{Flags: r.Flags, DevID: r.DevId, PASID: r.Pasid, Group: r.Grpid, Perm: r.Perm, Addr: r.Addr, Length: r.Length, Cookie: r.Cookie}
	}
	return out, nil
}

// Respond answers a fault group (by its cookie) with a response code
// (uapi.IOMMUFD_PAGE_RESP_SUCCESS or _INVALID).
func (q *FaultQueue) Respond(cookie, code uint32) error {
	r := uapi.IommuHwptPageResponse{Cookie: cookie, Code: code}
	return q.q.write(unsafe.Slice((*byte)(unsafe.Pointer(&r)), unsafe.Sizeof(r)))
}

// Close closes the queue's fd and destroys the object. A second Close, and
// every use after Close, fails with ErrClosed.
func (q *FaultQueue) Close() error { return q.close(q.q.close) }
