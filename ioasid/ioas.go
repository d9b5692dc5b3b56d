package ioasid

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/dma"
	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/uapi"
)

// IOAS is an I/O address space: IOVA -> process memory mappings that
// devices and HWPTs attached to it see. It implements dma.Mapper. Its
// methods are safe for concurrent use; after Close every one fails with
// ErrClosed.
type IOAS struct {
	object
}

// AllocIOAS is IOMMU_IOAS_ALLOC.
func (f *FD) AllocIOAS() (*IOAS, error) {
	var a uapi.IommuIoasAlloc
	if err := f.fd.Ioctl(call("IOMMU_IOAS_ALLOC", uapi.IOMMU_IOAS_ALLOC, ""), func(fd int) error { return uapi.IoctlIommuIoasAlloc(fd, &a) }); err != nil {
		return nil, err
	}
	return &IOAS{object: object{fd: f, kind: "ioas", id: a.OutIoasId}}, nil
}

// IOASByID wraps an existing IOAS of f by id (for example one a parent
// process allocated on an iommufd it handed over). The IOAS is borrowed:
// Close stops this value from using it but does not destroy it.
func (f *FD) IOASByID(id uint32) (*IOAS, error) {
	if _, err := f.fd.Int(); err != nil {
		return nil, err
	}
	return &IOAS{object: object{fd: f, kind: "ioas", id: id, borrowed: true}}, nil
}

// ID is the IOAS's object id (for vfio.Device.AttachPT).
func (s *IOAS) ID() uint32 { return s.id }

// Close destroys the IOAS (IOMMU_DESTROY; EBUSY while a device or HWPT
// uses it, and then Close can be retried). A borrowed IOAS (CompatIOAS,
// IOASByID) is not destroyed. Either way a second Close, and every use
// after Close, fails with ErrClosed.
func (s *IOAS) Close() error { return s.close(nil) }

// Ranges is IOMMU_IOAS_IOVA_RANGES: the IOVAs that may be mapped now
// (attaching devices narrows them) and the IOVA alignment.
func (s *IOAS) Ranges() (ranges []dma.Range, align uint64, err error) {
	err = s.use("IOMMU_IOAS_IOVA_RANGES", func(id uint32) error {
		ranges, align, err = s.ranges(id)
		return err
	})
	return ranges, align, err
}

func (s *IOAS) ranges(id uint32) ([]dma.Range, uint64, error) {
	n := uint32(4)
	for try := 0; try < 4; try++ {
		buf := make([]uapi.IommuIovaRange, n) // the kernel writes it through AllowedIovas
		q := uapi.IommuIoasIovaRanges{IoasId: id, NumIovas: n, AllowedIovas: uapi.SlicePointer(buf)}
		err := s.fd.fd.Ioctl(call("IOMMU_IOAS_IOVA_RANGES", uapi.IOMMU_IOAS_IOVA_RANGES, s.String()), func(fd int) error { return uapi.IoctlIommuIoasIovaRanges(fd, &q) })
		if errors.Is(err, unix.EMSGSIZE) {
			n = q.NumIovas
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		if q.NumIovas > n {
			return nil, 0, kernel.Call{Op: "IOMMU_IOAS_IOVA_RANGES", Object: s.fd.Name(), Args: s.String()}.Refuse(unix.EOVERFLOW, fmt.Sprintf("%d ranges overflow the buffer of %d", q.NumIovas, n))
		}
		out := make([]dma.Range, q.NumIovas)
		for i := range out {
			out[i] = dma.Range{Start: buf[i].Start, Last: buf[i].Last}
		}
		return out, q.OutIovaAlignment, nil
	}
	return nil, 0, kernel.Call{Op: "IOMMU_IOAS_IOVA_RANGES", Object: s.fd.Name(), Args: s.String()}.Refuse(unix.EAGAIN, "the range count kept changing")
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
	buf := make([]uapi.IommuIovaRange, len(ranges)+1) // never empty: a valid pointer
	for i, r := range ranges {
		buf[i] = uapi.IommuIovaRange{Start: r.Start, Last: r.Last}
	}
	return s.use("IOMMU_IOAS_ALLOW_IOVAS", func(id uint32) error {
		a := uapi.IommuIoasAllowIovas{IoasId: id, NumIovas: uint32(len(ranges)), AllowedIovas: uapi.SlicePointer(buf)}
		return s.fd.fd.Ioctl(call("IOMMU_IOAS_ALLOW_IOVAS", uapi.IOMMU_IOAS_ALLOW_IOVAS, fmt.Sprintf("%s, %d ranges", s, len(ranges))), func(fd int) error { return uapi.IoctlIommuIoasAllowIovas(fd, &a) })
	})
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
		return 0, kernel.Call{Op: "IOMMU_IOAS_MAP", Object: s.fd.Name(), Args: fmt.Sprintf("%s iova=%#x", s, iova)}.Refuse(unix.EINVAL, "empty buffer")
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, s.closedError("IOMMU_IOAS_MAP")
	}
	m := uapi.IommuIoasMap{
		Flags:  flags | mapFlags(perm),
		IoasId: s.id,
		UserVa: uapi.SlicePointer(mem), // keeps mem alive through the call
		Length: uint64(len(mem)),
		Iova:   iova,
	}
	if err := s.fd.fd.Do(func(fd int) error { return uapi.IoctlIommuIoasMap(fd, &m) }); err != nil {
		c := call("IOMMU_IOAS_MAP", uapi.IOMMU_IOAS_MAP, fmt.Sprintf("%s iova=%#x size=%#x", s, iova, len(mem)))
		c.Object, c.Hints = s.fd.Name(), kernel.MapHints
		return 0, c.Fail(err)
	}
	return m.Iova, nil
}

// Copy is IOMMU_IOAS_COPY: map into dst at dstIOVA the pages that the
// mapping [srcIOVA, srcIOVA+length) of s already pins (no second pin).
func (s *IOAS) Copy(dst *IOAS, dstIOVA, srcIOVA, length uint64, perm dma.Perm) error {
	return s.use("IOMMU_IOAS_COPY", func(src uint32) error {
		return dst.use("IOMMU_IOAS_COPY", func(dstID uint32) error {
			c := uapi.IommuIoasCopy{
				Flags:     uapi.IOMMU_IOAS_MAP_FIXED_IOVA | mapFlags(perm),
				DstIoasId: dstID,
				SrcIoasId: src,
				Length:    length,
				DstIova:   dstIOVA,
				SrcIova:   srcIOVA,
			}
			return s.fd.fd.Ioctl(call("IOMMU_IOAS_COPY", uapi.IOMMU_IOAS_COPY, fmt.Sprintf("ioas %d iova=%#x -> ioas %d iova=%#x length %#x", src, srcIOVA, dstID, dstIOVA, length)),
				func(fd int) error { return uapi.IoctlIommuIoasCopy(fd, &c) })
		})
	})
}

// Unmap is IOMMU_IOAS_UNMAP of [iova, iova+size) (dma.Mapper). The range
// must cover whole mappings; nothing mapped there is ENOENT. It does not
// allocate unless it fails.
func (s *IOAS) Unmap(iova, size uint64) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return s.closedError("IOMMU_IOAS_UNMAP")
	}
	u := uapi.IommuIoasUnmap{IoasId: s.id, Iova: iova, Length: size}
	if err := s.fd.fd.Do(func(fd int) error { return uapi.IoctlIommuIoasUnmap(fd, &u) }); err != nil {
		c := call("IOMMU_IOAS_UNMAP", uapi.IOMMU_IOAS_UNMAP, fmt.Sprintf("%s iova=%#x size=%#x", s, iova, size))
		c.Object = s.fd.Name()
		return c.Fail(err)
	}
	return nil
}

// UnmapAll unmaps everything and returns the bytes unmapped.
func (s *IOAS) UnmapAll() (n uint64, err error) {
	err = s.use("IOMMU_IOAS_UNMAP", func(id uint32) error {
		u := uapi.IommuIoasUnmap{IoasId: id, Iova: 0, Length: ^uint64(0)}
		err := s.fd.fd.Ioctl(call("IOMMU_IOAS_UNMAP", uapi.IOMMU_IOAS_UNMAP, fmt.Sprintf("%s all", s)), func(fd int) error { return uapi.IoctlIommuIoasUnmap(fd, &u) })
		n = u.Length
		return err
	})
	return n, err
}

// MapFile is IOMMU_IOAS_MAP_FILE (Linux 6.13): map [start, start+length) of
// a memfd at iova.
func (s *IOAS) MapFile(iova uint64, memfd int, start, length uint64, perm dma.Perm) error {
	return s.use("IOMMU_IOAS_MAP_FILE", func(id uint32) error {
		m := uapi.IommuIoasMapFile{Flags: uapi.IOMMU_IOAS_MAP_FIXED_IOVA | mapFlags(perm), IoasId: id, Fd: int32(memfd), Start: start, Length: length, Iova: iova}
		return s.fd.fd.Ioctl(call("IOMMU_IOAS_MAP_FILE", uapi.IOMMU_IOAS_MAP_FILE, fmt.Sprintf("%s iova=%#x fd %d", s, iova, memfd)), func(fd int) error { return uapi.IoctlIommuIoasMapFile(fd, &m) })
	})
}

// ChangeProcess is IOMMU_IOAS_CHANGE_PROCESS (Linux 6.14): move the pinned
// page accounting of all file mappings of the FD to the calling process.
func (f *FD) ChangeProcess() error {
	var c uapi.IommuIoasChangeProcess
	return f.fd.Ioctl(call("IOMMU_IOAS_CHANGE_PROCESS", uapi.IOMMU_IOAS_CHANGE_PROCESS, ""), func(fd int) error { return uapi.IoctlIommuIoasChangeProcess(fd, &c) })
}

var _ dma.Mapper = (*IOAS)(nil)
