package ioasid

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/uapi"
)

// FaultQueue is an iommufd fault object (IOMMU_FAULT_QUEUE_ALLOC, Linux
// 6.11): I/O page faults of HWPTs allocated with it are read from its fd,
// and answered by writing page responses.
type FaultQueue struct {
	owner *FD
	id    uint32
	fd    *kernel.FD
}

// AllocFaultQueue is IOMMU_FAULT_QUEUE_ALLOC.
func (f *FD) AllocFaultQueue() (*FaultQueue, error) {
	a := uapi.IommuFaultAlloc{Size: uint32(unsafe.Sizeof(uapi.IommuFaultAlloc{}))}
	if err := f.ioctl("IOMMU_FAULT_QUEUE_ALLOC", uapi.IOMMU_FAULT_QUEUE_ALLOC, unsafe.Pointer(&a), ""); err != nil {
		return nil, err
	}
	fd, err := kernel.NewFD(int(a.OutFaultFd), fmt.Sprintf("iommufd fault queue %d", a.OutFaultId))
	if err != nil {
		return nil, err
	}
	return &FaultQueue{owner: f, id: a.OutFaultId, fd: fd}, nil
}

// ID is the fault object's id.
func (q *FaultQueue) ID() uint32 { return q.id }

// Read reads the fault records available now (the fd is blocking: it waits
// for at least one). Each record is a struct iommu_hwpt_pgfault.
func (q *FaultQueue) Read(max int) ([]uapi.IommuHwptPgfault, error) {
	fd, err := q.fd.Int()
	if err != nil {
		return nil, err
	}
	size := int(unsafe.Sizeof(uapi.IommuHwptPgfault{}))
	buf := make([]byte, size*max)
	n, err := unix.Read(fd, buf)
	if err != nil {
		return nil, &kernel.Error{Op: "read", Object: q.fd.Name(), Err: err}
	}
	out := make([]uapi.IommuHwptPgfault, n/size)
	for i := range out {
		rec, err := uapi.Decode[uapi.IommuHwptPgfault](buf[i*size : n])
		if err != nil {
			return out[:i], err
		}
		out[i] = *rec
	}
	return out, nil
}

// Respond answers a fault group (by its cookie) with a response code
// (uapi.IOMMUFD_PAGE_RESP_SUCCESS or _INVALID).
func (q *FaultQueue) Respond(cookie, code uint32) error {
	fd, err := q.fd.Int()
	if err != nil {
		return err
	}
	r := uapi.IommuHwptPageResponse{Cookie: cookie, Code: code}
	b := unsafe.Slice((*byte)(unsafe.Pointer(&r)), unsafe.Sizeof(r))
	if _, err := unix.Write(fd, b); err != nil {
		return &kernel.Error{Op: "write", Object: q.fd.Name(), Args: fmt.Sprintf("cookie %d code %d", cookie, code), Err: err}
	}
	return nil
}

// Close closes the queue's fd and destroys the object.
func (q *FaultQueue) Close() error {
	err := q.fd.Close()
	if err != nil {
		return err
	}
	return q.owner.Destroy(q.id)
}
