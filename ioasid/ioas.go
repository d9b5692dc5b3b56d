package ioasid

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/dma"
	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/uapi"
)

// IOAS is an I/O address space: IOVA -> process memory mappings that
// devices and HWPTs attached to it see. It implements dma.Mapper.
type IOAS struct {
	fd       *FD
	id       uint32
	borrowed bool // the compat IOAS: not destroyed by Close
	closed   bool
}

// AllocIOAS is IOMMU_IOAS_ALLOC.
func (f *FD) AllocIOAS() (*IOAS, error) {
	a := uapi.IommuIoasAlloc{Size: uint32(unsafe.Sizeof(uapi.IommuIoasAlloc{}))}
	if err := f.ioctl("IOMMU_IOAS_ALLOC", uapi.IOMMU_IOAS_ALLOC, unsafe.Pointer(&a), ""); err != nil {
		return nil, err
	}
	return &IOAS{fd: f, id: a.OutIoasId}, nil
}

// ID is the IOAS's object id (for vfio.Device.AttachPT).
func (s *IOAS) ID() uint32 { return s.id }

// Close destroys the IOAS (IOMMU_DESTROY); the compat IOAS is left alone.
func (s *IOAS) Close() error {
	if s.closed {
		return &kernel.Error{Op: "IOMMU_DESTROY", Object: s.fd.Name(), Args: fmt.Sprintf("ioas %d", s.id), Err: kernel.ErrClosed}
	}
	s.closed = true
	if s.borrowed {
		return nil
	}
	return s.fd.Destroy(s.id)
}

// Ranges is IOMMU_IOAS_IOVA_RANGES: the IOVAs that may be mapped now
// (attaching devices narrows them) and the IOVA alignment.
func (s *IOAS) Ranges() ([]dma.Range, uint64, error) {
	n := uint32(4)
	for try := 0; try < 4; try++ {
		rs := make([]uapi.IommuIovaRange, n)
		q := uapi.IommuIoasIovaRanges{Size: uint32(unsafe.Sizeof(uapi.IommuIoasIovaRanges{})), IoasId: s.id, NumIovas: n,
			AllowedIovas: uint64(uintptr(unsafe.Pointer(&rs[0])))}
		err := s.fd.ioctl("IOMMU_IOAS_IOVA_RANGES", uapi.IOMMU_IOAS_IOVA_RANGES, unsafe.Pointer(&q), fmt.Sprintf("ioas %d", s.id))
		if errors.Is(err, unix.EMSGSIZE) {
			n = q.NumIovas
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		out := make([]dma.Range, q.NumIovas)
		for i := range out {
			out[i] = dma.Range{Start: rs[i].Start, Last: rs[i].Last}
		}
		return out, q.OutIovaAlignment, nil
	}
	return nil, 0, fmt.Errorf("IOMMU_IOAS_IOVA_RANGES on ioas %d: range count kept changing", s.id)
}

// IOVARanges implements dma.Mapper.
func (s *IOAS) IOVARanges() ([]dma.Range, error) {
	r, _, err := s.Ranges()
	return r, err
}

// Alignment implements dma.Mapper.
func (s *IOAS) Alignment() (uint64, error) {
	_, a, err := s.Ranges()
	return a, err
}

// AllowIOVAs is IOMMU_IOAS_ALLOW_IOVAS: from now on the kernel keeps these
// ranges mappable (device attach that would narrow them fails) and picks
// automatic IOVAs only inside them.
func (s *IOAS) AllowIOVAs(ranges []dma.Range) error {
	rs := make([]uapi.IommuIovaRange, len(ranges)+1) // never empty: a valid pointer
	for i, r := range ranges {
		rs[i] = uapi.IommuIovaRange{Start: r.Start, Last: r.Last}
	}
	a := uapi.IommuIoasAllowIovas{Size: uint32(unsafe.Sizeof(uapi.IommuIoasAllowIovas{})), IoasId: s.id, NumIovas: uint32(len(ranges)),
		AllowedIovas: uint64(uintptr(unsafe.Pointer(&rs[0])))}
	return s.fd.ioctl("IOMMU_IOAS_ALLOW_IOVAS", uapi.IOMMU_IOAS_ALLOW_IOVAS, unsafe.Pointer(&a), fmt.Sprintf("ioas %d, %d ranges", s.id, len(ranges)))
}

func mapFlags(perm dma.Perm) uint32 {
	var f uint32
	if perm&dma.Read != 0 {
		f |= uapi.IOMMU_IOAS_MAP_READABLE
	}
	if perm&dma.Write != 0 {
		f |= uapi.IOMMU_IOAS_MAP_WRITEABLE
	}
	return f
}

// Map is IOMMU_IOAS_MAP at a fixed IOVA (dma.Mapper). It does not allocate
// unless it fails.
func (s *IOAS) Map(iova uint64, mem []byte, perm dma.Perm) error {
	_, err := s.mapAt(iova, mem, perm, uapi.IOMMU_IOAS_MAP_FIXED_IOVA)
	return err
}

// MapAnywhere is IOMMU_IOAS_MAP letting the kernel choose the IOVA.
func (s *IOAS) MapAnywhere(mem []byte, perm dma.Perm) (uint64, error) {
	return s.mapAt(0, mem, perm, 0)
}

func (s *IOAS) mapAt(iova uint64, mem []byte, perm dma.Perm, flags uint32) (uint64, error) {
	if len(mem) == 0 {
		return 0, &kernel.Error{Op: "IOMMU_IOAS_MAP", Object: s.fd.Name(), Args: fmt.Sprintf("ioas %d iova=%#x", s.id, iova), Err: unix.EINVAL, Hint: "empty buffer"}
	}
	m := uapi.IommuIoasMap{
		Size:   uint32(unsafe.Sizeof(uapi.IommuIoasMap{})),
		Flags:  flags | mapFlags(perm),
		IoasId: s.id,
		UserVa: uint64(uintptr(unsafe.Pointer(&mem[0]))),
		Length: uint64(len(mem)),
		Iova:   iova,
	}
	if _, err := s.fd.fd.Ioctl(uapi.IOMMU_IOAS_MAP, uintptr(unsafe.Pointer(&m))); err != nil {
		return 0, kernel.MapError("IOMMU_IOAS_MAP", s.fd.Name(), fmt.Sprintf("ioas %d iova=%#x size=%#x", s.id, iova, len(mem)), err)
	}
	return m.Iova, nil
}

// Copy is IOMMU_IOAS_COPY: map into dst at dstIOVA the pages that the
// mapping [srcIOVA, srcIOVA+length) of s already pins (no second pin).
func (s *IOAS) Copy(dst *IOAS, dstIOVA, srcIOVA, length uint64, perm dma.Perm) error {
	c := uapi.IommuIoasCopy{
		Size:      uint32(unsafe.Sizeof(uapi.IommuIoasCopy{})),
		Flags:     uapi.IOMMU_IOAS_MAP_FIXED_IOVA | mapFlags(perm),
		DstIoasId: dst.id,
		SrcIoasId: s.id,
		Length:    length,
		DstIova:   dstIOVA,
		SrcIova:   srcIOVA,
	}
	return s.fd.ioctl("IOMMU_IOAS_COPY", uapi.IOMMU_IOAS_COPY, unsafe.Pointer(&c),
		fmt.Sprintf("ioas %d iova=%#x -> ioas %d iova=%#x length %#x", s.id, srcIOVA, dst.id, dstIOVA, length))
}

// Unmap is IOMMU_IOAS_UNMAP of [iova, iova+size) (dma.Mapper). The range
// must cover whole mappings; nothing mapped there is ENOENT.
func (s *IOAS) Unmap(iova, size uint64) error {
	u := uapi.IommuIoasUnmap{Size: uint32(unsafe.Sizeof(uapi.IommuIoasUnmap{})), IoasId: s.id, Iova: iova, Length: size}
	if _, err := s.fd.fd.Ioctl(uapi.IOMMU_IOAS_UNMAP, uintptr(unsafe.Pointer(&u))); err != nil {
		return &kernel.Error{Op: "IOMMU_IOAS_UNMAP", Object: s.fd.Name(), Args: fmt.Sprintf("ioas %d iova=%#x size=%#x", s.id, iova, size), Err: err}
	}
	return nil
}

// UnmapAll unmaps everything and returns the bytes unmapped.
func (s *IOAS) UnmapAll() (uint64, error) {
	u := uapi.IommuIoasUnmap{Size: uint32(unsafe.Sizeof(uapi.IommuIoasUnmap{})), IoasId: s.id, Iova: 0, Length: ^uint64(0)}
	err := s.fd.ioctl("IOMMU_IOAS_UNMAP", uapi.IOMMU_IOAS_UNMAP, unsafe.Pointer(&u), fmt.Sprintf("ioas %d all", s.id))
	return u.Length, err
}

// MapFile is IOMMU_IOAS_MAP_FILE (Linux 6.13): map [start, start+length) of
// a memfd at iova.
func (s *IOAS) MapFile(iova uint64, fd int, start, length uint64, perm dma.Perm) error {
	m := uapi.IommuIoasMapFile{Size: uint32(unsafe.Sizeof(uapi.IommuIoasMapFile{})), Flags: uapi.IOMMU_IOAS_MAP_FIXED_IOVA | mapFlags(perm),
		IoasId: s.id, Fd: int32(fd), Start: start, Length: length, Iova: iova}
	return s.fd.ioctl("IOMMU_IOAS_MAP_FILE", uapi.IOMMU_IOAS_MAP_FILE, unsafe.Pointer(&m), fmt.Sprintf("ioas %d iova=%#x fd %d", s.id, iova, fd))
}

// ChangeProcess is IOMMU_IOAS_CHANGE_PROCESS (Linux 6.14): move the pinned
// page accounting of all file mappings of the FD to the calling process.
func (f *FD) ChangeProcess() error {
	c := uapi.IommuIoasChangeProcess{Size: uint32(unsafe.Sizeof(uapi.IommuIoasChangeProcess{}))}
	return f.ioctl("IOMMU_IOAS_CHANGE_PROCESS", uapi.IOMMU_IOAS_CHANGE_PROCESS, unsafe.Pointer(&c), "")
}

var _ dma.Mapper = (*IOAS)(nil)

// IOASByID wraps an existing IOAS of f by id (for example one a parent
// process allocated on an inherited iommufd). Close does not destroy it.
func (f *FD) IOASByID(id uint32) (*IOAS, error) {
	if _, err := f.fd.Int(); err != nil {
		return nil, err
	}
	return &IOAS{fd: f, id: id, borrowed: true}, nil
}
