package iommufdtest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/ioasid"
	"github.com/vfioctl/vfioctl/uapi"
)

// Mock issues IOMMU_TEST_CMD on an iommufd.
type Mock struct {
	fd *ioasid.FD
}

// New drives the mock IOMMU through fd.
func New(fd *ioasid.FD) *Mock { return &Mock{fd: fd} }

// Device is a mock device bound to the iommufd, as a VFIO device is by
// BIND_IOMMUFD, and attached to an IOMMU domain.
type Device struct {
	StdevID uint32 // the selftest object: destroying it removes the device
	HWPTID  uint32 // the HWPT it is attached to
	DevID   uint32 // its iommufd device id, as vfio.Device.BindIOMMUFD returns
}

// call issues one IOMMU_TEST_CMD with the payload p in the command's union
// and copies the kernel's answer back into p.
func call[T any](m *Mock, op, id uint32, p *T, args string) error {
	c := testCmd{Size: uint32(unsafe.Sizeof(testCmd{})), Op: op, ID: id}
	*(*T)(unsafe.Pointer(&c.U)) = *p
	err := m.fd.Control(func(fd int) error {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), cmdNumber, uintptr(unsafe.Pointer(&c)))
		if errno != 0 {
			return errno
		}
		return nil
	})
	*p = *(*T)(unsafe.Pointer(&c.U))
	if err != nil {
		return kernel.Call{Op: fmt.Sprintf("IOMMU_TEST_CMD(op %d)", op), Object: m.fd.Name(), Args: args, Hints: testCmdHints}.Fail(err)
	}
	return nil
}

var testCmdHints = kernel.Hints{unix.ENOTTY: kernel.Say("the kernel was built without CONFIG_IOMMUFD_TEST")}

// userAddr is the address of mem for a payload field the kernel reads
// through. The payload travels in the command's union, which is bytes,
// so the collector cannot see a pointer there: callers keep mem alive
// across the call (runtime.KeepAlive).
func userAddr(mem []byte) uint64 { return uint64(uapi.SlicePointer(mem).Addr()) }

// Probe reports whether the kernel has the mock: nil, or an error matching
// unix.ENOTTY without CONFIG_IOMMUFD_TEST. It sets the temporary memory
// limit to the kernel's default (65536).
func (m *Mock) Probe() error { return m.SetTempMemoryLimit(65536) }

// AddDevice is IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS: a new mock device, bound
// to the iommufd and attached to an automatic domain of ioas. flags:
// DeviceNoDirty, DeviceHugeIOVA.
func (m *Mock) AddDevice(ioas *ioasid.IOAS, flags uint32) (*Device, error) {
	p := mockDomainFlags{DevFlags: flags}
	if err := call(m, opMockDomainFlags, ioas.ID(), &p, fmt.Sprintf("mock device on ioas %d flags %#x", ioas.ID(), flags)); err != nil {
		return nil, err
	}
	return &Device{StdevID: p.OutStdevID, HWPTID: p.OutHWPTID, DevID: p.OutIdevID}, nil
}

// Remove destroys the mock device (and its binding).
func (m *Mock) Remove(d *Device) error { return m.fd.Destroy(d.StdevID) }

// Attach is IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE: d moves to the HWPT (or the
// IOAS's automatic domain) ptID, as vfio.Device.AttachPT moves a VFIO device.
func (m *Mock) Attach(d *Device, ptID uint32) error {
	p := mockDomainReplace{PtID: ptID}
	if err := call(m, opMockDomainReplace, d.StdevID, &p, fmt.Sprintf("stdev %d to pt %d", d.StdevID, ptID)); err != nil {
		return err
	}
	d.HWPTID = p.PtID
	return nil
}

// AddReserved is IOMMU_TEST_OP_ADD_RESERVED: [start, start+length) of ioas
// becomes reserved, as a device's MSI window would.
func (m *Mock) AddReserved(ioas *ioasid.IOAS, start, length uint64) error {
	p := addReserved{Start: start, Length: length}
	return call(m, opAddReserved, ioas.ID(), &p, fmt.Sprintf("ioas %d start=%#x length=%#x", ioas.ID(), start, length))
}

// CheckMap is IOMMU_TEST_OP_MD_CHECK_MAP: every IOMMU page of the mock
// domain hwptID in [iova, iova+len(mem)) translates to the page of mem at
// the same offset. mem must be page aligned.
func (m *Mock) CheckMap(hwptID uint32, iova uint64, mem []byte) error {
	p := checkMap{IOVA: iova, Length: uint64(len(mem)), Uptr: userAddr(mem)}
	err := call(m, opMDCheckMap, hwptID, &p, fmt.Sprintf("hwpt %d iova=%#x length=%#x", hwptID, iova, len(mem)))
	runtime.KeepAlive(mem)
	return err
}

// CheckIOTLB is IOMMU_TEST_OP_MD_CHECK_IOTLB: entry index of the nested
// mock HWPT's IOTLB holds want (EINVAL otherwise).
func (m *Mock) CheckIOTLB(hwptID, index, want uint32) error {
	p := checkIOTLB{ID: index, IOTLB: want}
	return call(m, opMDCheckIOTLB, hwptID, &p, fmt.Sprintf("hwpt %d iotlb[%d]=%#x", hwptID, index, want))
}

// SetTempMemoryLimit is IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT: the bytes
// iommufd may allocate for one batch of pinned pages (default 65536; a
// small limit forces many small batches; under 12 is EINVAL).
func (m *Mock) SetTempMemoryLimit(limit uint32) error {
	p := memoryLimit{Limit: limit}
	return call(m, opSetTempMemoryLimit, 0, &p, fmt.Sprintf("limit %d", limit))
}

// MarkDirty is IOMMU_TEST_OP_DIRTY: the mock IOMMU marks dirty, as a
// device's writes would, each page i of [iova, iova+n*pageSize) whose bit
// is set in bitmap (bit i of word i/64). pageSize is the mock's IOMMU page
// (the IOAS's alignment). It returns how many mapped pages it marked.
func (m *Mock) MarkDirty(hwptID uint32, iova, pageSize uint64, n int, bitmap []uint64) (uint64, error) {
	if len(bitmap)*64 < n {
		return 0, fmt.Errorf("mark dirty: a bitmap of %d words for %d pages", len(bitmap), n)
	}
	buf := make([]byte, len(bitmap)*8) // read through Uptr
	for i, w := range bitmap {
		binary.NativeEndian.PutUint64(buf[i*8:], w)
	}
	p := dirty{IOVA: iova, Length: uint64(n) * pageSize, PageSize: pageSize, Uptr: userAddr(buf)}
	err := call(m, opDirty, hwptID, &p, fmt.Sprintf("hwpt %d iova=%#x pages=%d", hwptID, iova, n))
	runtime.KeepAlive(buf)
	return p.OutNrDirty, err
}

// TriggerIOPF is IOMMU_TEST_OP_TRIGGER_IOPF: the mock device devID reports
// an I/O page fault (a page request, last of its group) at addr.
func (m *Mock) TriggerIOPF(devID, pasid, grpid, perm uint32, addr uint64) error {
	p := triggerIOPF{DevID: devID, PASID: pasid, GrpID: grpid, Perm: perm, Addr: addr}
	return call(m, opTriggerIOPF, 0, &p, fmt.Sprintf("dev %d pasid %d grpid %d addr %#x", devID, pasid, grpid, addr))
}

// Bytes encodes v (a struct of this package, or a slice of them) as the
// kernel reads it: the data of AllocNestedHWPT and the requests of
// Invalidate.
func Bytes(v any) []byte {
	var b bytes.Buffer
	if err := binary.Write(&b, binary.NativeEndian, v); err != nil {
		panic(err) // only fixed-size types of this package are passed
	}
	return b.Bytes()
}

// DecodeHWInfo decodes the data of IOMMU_GET_HW_INFO for a mock device.
func DecodeHWInfo(raw []byte) (*HWInfo, error) {
	var h HWInfo
	if err := binary.Read(bytes.NewReader(raw), binary.NativeEndian, &h); err != nil {
		return nil, fmt.Errorf("mock hw info of %d bytes: %w", len(raw), err)
	}
	return &h, nil
}
