package guest

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/dma"
	"github.com/vfioctl/vfioctl/internal/testdev/iommufdtest"
	"github.com/vfioctl/vfioctl/ioasid"
	"github.com/vfioctl/vfioctl/uapi"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// The TestMock* tests drive the public ioasid API against the mock IOMMU
// of CONFIG_IOMMUFD_TEST: dirty tracking, nesting and I/O page faults,
// which no QEMU 7.2 vIOMMU offers. They run on the iommufdtest kernel and
// must pass there; other kernels lack the mock and skip them, saying so.

// mockEnv is an iommufd with an IOAS and a mock device attached to it.
type mockEnv struct {
	fd   *ioasid.FD
	ioas *ioasid.IOAS
	mock *iommufdtest.Mock
	dev  *iommufdtest.Device
}

func openMock(t *testing.T, devFlags uint32) *mockEnv {
	t.Helper()
	fd, err := ioasid.Open()
	if err == nil {
		err = iommufdtest.New(fd).Probe()
		if err != nil {
			fd.Close()
		}
	}
	if err != nil {
		if Kernel == "iommufdtest" {
			t.Fatalf("the iommufdtest kernel has no mock IOMMU: %v", err)
		}
		if !errors.Is(err, unix.ENOTTY) && !errors.Is(err, vfioerr.ErrNotSupported) {
			t.Fatalf("probing CONFIG_IOMMUFD_TEST: %v (want success, or ENOTTY / ErrNotSupported)", err)
		}
		t.Skipf("kernel %s has no CONFIG_IOMMUFD_TEST (the iommufdtest kernel runs this): %v", Kernel, err)
	}
	e := &mockEnv{fd: fd, mock: iommufdtest.New(fd)}
	t.Cleanup(func() { fd.Close() })
	if e.ioas, err = fd.AllocIOAS(); err != nil {
		t.Fatal(err)
	}
	if e.dev, err = e.mock.AddDevice(e.ioas, devFlags); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.mock.Remove(e.dev); err != nil {
			t.Errorf("removing the mock device: %v", err)
		}
	})
	return e
}

// anon maps n bytes of anonymous memory for the test's length.
func anon(t *testing.T, n int) []byte {
	t.Helper()
	mem, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(mem) })
	return mem
}

// closeAll closes objects in order, failing the test on any error.
func closeAll(t *testing.T, objs ...interface{ Close() error }) {
	t.Helper()
	for _, o := range objs {
		if err := o.Close(); err != nil {
			t.Errorf("close %v: %v", o, err)
		}
	}
}

// bits returns the indexes of the set bits of bm.
func bits(bm []uint64) []int {
	var out []int
	for i, w := range bm {
		for b := 0; b < 64; b++ {
			if w&(1<<b) != 0 {
				out = append(out, i*64+b)
			}
		}
	}
	return out
}

func bitmapOf(n int, pages ...int) []uint64 {
	bm := make([]uint64, (n+63)/64)
	for _, p := range pages {
		bm[p/64] |= 1 << (p % 64)
	}
	return bm
}

// TestMockHWInfo: IOMMU_GET_HW_INFO of a mock device decodes as the
// selftest type, with the dirty-tracking capability unless the device was
// created without it.
func TestMockHWInfo(t *testing.T) {
	e := openMock(t, 0)
	info, err := e.fd.HWInfo(e.dev.DevID)
	if err != nil {
		t.Fatal(err)
	}
	if info.Type != iommufdtest.HWInfoTypeSelftest || info.TypeName() != "type-0xfeedbeef" {
		t.Errorf("type %#x (%s), want the selftest type %#x", info.Type, info.TypeName(), iommufdtest.HWInfoTypeSelftest)
	}
	data, err := iommufdtest.DecodeHWInfo(info.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if data.TestReg != iommufdtest.HWInfoSelftestRegval || len(info.Raw) != 8 {
		t.Errorf("hw info data %x (%d bytes): test_reg %#x, want %#x in 8 bytes", info.Raw, len(info.Raw), data.TestReg, iommufdtest.HWInfoSelftestRegval)
	}
	if !info.DirtyTracking() {
		t.Errorf("the mock device reports no dirty tracking (capabilities %#x)", info.Capabilities)
	}

	plain, err := e.mock.AddDevice(e.ioas, iommufdtest.DeviceNoDirty)
	if err != nil {
		t.Fatal(err)
	}
	defer e.mock.Remove(plain)
	info, err = e.fd.HWInfo(plain.DevID)
	if err != nil {
		t.Fatal(err)
	}
	if info.DirtyTracking() {
		t.Errorf("a NO_DIRTY mock device reports dirty tracking (capabilities %#x)", info.Capabilities)
	}
	_, err = e.fd.AllocHWPT(plain.DevID, e.ioas, ioasid.HWPTDirtyTracking)
	if !errors.Is(err, vfioerr.ErrNotSupported) || !strings.Contains(err.Error(), "dirty") {
		t.Errorf("HWPT_ALLOC(DIRTY_TRACKING) on a device without it: %v; want ErrNotSupported", err)
	}
}

// TestMockDirtyTracking: pages the mock IOMMU marks dirty come back from
// GET_DIRTY_BITMAP exactly, are kept by the no-clear read and cleared by
// the clearing one, at the IOMMU page and at coarser granules; without
// tracking on, nothing is marked or reported.
func TestMockDirtyTracking(t *testing.T) {
	e := openMock(t, 0)
	hwpt, err := e.fd.AllocHWPT(e.dev.DevID, e.ioas, ioasid.HWPTDirtyTracking)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.mock.Attach(e.dev, hwpt.ID()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := e.mock.Attach(e.dev, e.ioas.ID()); err != nil {
			t.Error(err)
		}
		closeAll(t, hwpt)
	}()
	pg, err := e.ioas.Alignment()
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(os.Getpagesize() / 2); pg != want {
		t.Fatalf("IOVA alignment %#x, want the mock's IOMMU page %#x", pg, want)
	}
	const npages = 64
	iova := uint64(iommufdtest.ApertureStart)
	mem := anon(t, npages*int(pg))
	if err := e.ioas.Map(iova, mem, dma.Read|dma.Write); err != nil {
		t.Fatal(err)
	}
	defer e.ioas.Unmap(iova, uint64(len(mem)))
	if err := e.mock.CheckMap(hwpt.ID(), iova, mem); err != nil {
		t.Fatalf("the mock domain does not map the IOAS mapping: %v", err)
	}
	length := uint64(npages) * pg

	off := func(when string) {
		t.Helper()
		if _, err := e.mock.MarkDirty(hwpt.ID(), iova, pg, npages, bitmapOf(npages, 1)); !errors.Is(err, unix.EINVAL) {
			t.Errorf("%s: the mock marked pages dirty with tracking off (%v)", when, err)
		}
		// The mock refuses to read dirty bits with tracking off (EINVAL).
		// Linux 6.12.118 passes the refusal on: iommu_read_and_clear_dirty
		// returns what iova_bitmap_for_each returns (its changelog's
		// "iommufd/iova_bitmap: Ensure that iova_bitmap_set() handles the
		// full IOVA" is where the change came to 6.12). Earlier 6.12
		// releases dropped it and answered with an empty bitmap.
		bm, err := hwpt.DirtyBitmap(iova, length, pg, true)
		switch v := linuxVersion(t); {
		case v >= linux(6, 12, 118) && v < linux(6, 13, 0):
			if !errors.Is(err, unix.EINVAL) {
				t.Errorf("%s: GET_DIRTY_BITMAP = %v, %v; want the mock's refusal (EINVAL), which 6.12.118 passes on", when, bits(bm), err)
			}
		case v >= linux(6, 12, 0) && v < linux(6, 12, 118):
			if err != nil || len(bits(bm)) != 0 {
				t.Errorf("%s: GET_DIRTY_BITMAP = %v, %v; want no dirty page (6.12 before .118 drops the mock's refusal)", when, bits(bm), err)
			}
		default:
			t.Fatalf("no expectation for this kernel's answer to reading dirty bits with tracking off (known: 6.12 before and from .118): %v, %v", bits(bm), err)
		}
	}
	off("before tracking on")
	if err := hwpt.SetDirtyTracking(true); err != nil {
		t.Fatal(err)
	}
	dirty := []int{0, 5, 6, 63}
	// Pages past the mapping are not marked: the mock counts mapped ones.
	n, err := e.mock.MarkDirty(hwpt.ID(), iova, pg, 2*npages, bitmapOf(2*npages, append(dirty, 64, 100)...))
	if err != nil || n != uint64(len(dirty)) {
		t.Fatalf("marking pages %v dirty: %d marked, %v; want %d", dirty, n, err, len(dirty))
	}
	read := func(what string, gran uint64, clear bool) []int {
		t.Helper()
		bm, err := hwpt.DirtyBitmap(iova, length, gran, clear)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if want := int((length/gran + 63) / 64); len(bm) != want {
			t.Errorf("%s: %d words, want %d", what, len(bm), want)
		}
		return bits(bm)
	}
	same := func(what string, got, want []int) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: dirty pages %v, want %v", what, got, want)
		}
	}
	same("no-clear read", read("no-clear read", pg, false), dirty)
	same("second no-clear read", read("second no-clear read", pg, false), dirty)
	same("granule 4 pages", read("granule 4 pages", 4*pg, false), []int{0, 1, 15})
	same("clearing read", read("clearing read", pg, true), dirty)
	same("after the clearing read", read("after the clearing read", pg, true), nil)

	if _, err := e.mock.MarkDirty(hwpt.ID(), iova, pg, npages, bitmapOf(npages, 7)); err != nil {
		t.Fatal(err)
	}
	same("a later write", read("a later write", pg, true), []int{7})

	if err := hwpt.SetDirtyTracking(false); err != nil {
		t.Fatal(err)
	}
	off("after tracking off")
	if _, err := hwpt.DirtyBitmap(iova, length, 3*pg, true); !errors.Is(err, unix.EINVAL) {
		t.Errorf("a granule that does not divide the range: %v, want EINVAL", err)
	}
}

// TestMockNesting: a nested HWPT on a nest parent, configured with the
// selftest data; HWPT_INVALIDATE clears exactly the IOTLB entries asked
// for, and a malformed request stops the kernel at its index, which the
// error reports.
func TestMockNesting(t *testing.T) {
	e := openMock(t, 0)
	parent, err := e.fd.AllocHWPT(e.dev.DevID, e.ioas, ioasid.HWPTNestParent)
	if err != nil {
		t.Fatal(err)
	}
	data := iommufdtest.Bytes(iommufdtest.HWPTSelftest{IOTLB: iommufdtest.IOTLBDefault})
	if _, err := e.fd.AllocNestedHWPT(e.dev.DevID, parent, uapi.IOMMU_HWPT_DATA_VTD_S1, data, nil); !errors.Is(err, unix.EOPNOTSUPP) {
		t.Errorf("nested HWPT with VT-d data on the mock: %v, want EOPNOTSUPP", err)
	}
	plain, err := e.fd.AllocHWPT(e.dev.DevID, e.ioas, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.fd.AllocNestedHWPT(e.dev.DevID, plain, iommufdtest.HWPTDataSelftest, data, nil); !errors.Is(err, unix.EINVAL) {
		t.Errorf("nested HWPT on a parent without NEST_PARENT: %v, want EINVAL", err)
	}
	if _, err := e.fd.AllocNestedHWPT(e.dev.DevID, parent, iommufdtest.HWPTDataSelftest, nil, nil); !errors.Is(err, unix.EINVAL) {
		t.Errorf("nested HWPT without data: %v, want EINVAL", err)
	}
	nested, err := e.fd.AllocNestedHWPT(e.dev.DevID, parent, iommufdtest.HWPTDataSelftest, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.mock.Attach(e.dev, nested.ID()); err != nil {
		t.Fatal(err)
	}
	if err := parent.Close(); !errors.Is(err, unix.EBUSY) {
		t.Errorf("closing the parent under a nested HWPT: %v, want EBUSY", err)
	}

	iotlb := func(what string, want ...uint32) {
		t.Helper()
		for i, w := range want {
			if err := e.mock.CheckIOTLB(nested.ID(), uint32(i), w); err != nil {
				t.Errorf("%s: IOTLB entry %d is not %#x: %v", what, i, w, err)
			}
		}
	}
	const d = iommufdtest.IOTLBDefault
	iotlb("after allocation", d, d, d, d)

	type req = iommufdtest.InvalidateSelftest
	inv := func(dataType uint32, entrySize int, reqs ...req) (int, error) {
		entries := make([][]byte, len(reqs))
		for i, r := range reqs {
			entries[i] = iommufdtest.Bytes(r)[:entrySize]
		}
		return nested.Invalidate(dataType, entries...)
	}
	const typ, size = iommufdtest.InvalidateDataSelftest, 8
	if n, err := inv(typ, size, req{IOTLBID: 1}); err != nil || n != 1 {
		t.Fatalf("invalidating entry 1: %d handled, %v", n, err)
	}
	iotlb("entry 1 invalidated", d, 0, d, d)

	n, err := inv(typ, size, req{IOTLBID: 2}, req{IOTLBID: iommufdtest.NestedIOTLBIDMax + 1}, req{IOTLBID: 3})
	if !errors.Is(err, unix.EINVAL) || n != 1 || !strings.Contains(err.Error(), "stopped at request 1") {
		t.Errorf("an out-of-range entry second of three: %d handled, %v; want EINVAL after 1, naming request 1", n, err)
	}
	iotlb("entry 2 invalidated before the bad request", d, 0, 0, d)

	if n, err := inv(typ, size, req{Flags: 1 << 1, IOTLBID: 3}); !errors.Is(err, unix.EOPNOTSUPP) || n != 0 {
		t.Errorf("an unknown flag: %d handled, %v; want EOPNOTSUPP after 0", n, err)
	}
	if n, err := inv(iommufdtest.InvalidateDataSelftestInvalid, size, req{IOTLBID: 3}); !errors.Is(err, unix.EINVAL) || n != 0 {
		t.Errorf("a data type the driver does not take: %d handled, %v; want EINVAL after 0", n, err)
	}
	if n, err := inv(typ, 4, req{IOTLBID: 3}); !errors.Is(err, unix.EINVAL) || n != 0 {
		t.Errorf("entries shorter than the driver's struct: %d handled, %v; want EINVAL after 0", n, err)
	}
	if _, err := parent.Invalidate(typ, iommufdtest.Bytes(req{IOTLBID: 3})); !errors.Is(err, unix.ENOENT) || !strings.Contains(err.Error(), "not a nested HWPT") {
		t.Errorf("invalidating a paging HWPT: %v; want ENOENT saying it is not nested", err)
	}
	iotlb("after the refused requests", d, 0, 0, d)

	if n, err := inv(typ, size, req{Flags: iommufdtest.InvalidateFlagAll}); err != nil || n != 1 {
		t.Fatalf("invalidating all: %d handled, %v", n, err)
	}
	iotlb("all invalidated", 0, 0, 0, 0)
	if n, err := inv(typ, size); err != nil || n != 0 {
		t.Errorf("an empty request array: %d handled, %v; want success", n, err)
	}

	if err := e.mock.Attach(e.dev, e.ioas.ID()); err != nil {
		t.Fatal(err)
	}
	closeAll(t, nested, parent, plain)
}

// TestMockFaults: a fault queue receives the page request a device behind
// a fault-reporting HWPT raises, decoded; bad responses are refused and
// leave the fault pending; the right one completes it.
func TestMockFaults(t *testing.T) {
	e := openMock(t, 0)
	q, err := e.fd.AllocFaultQueue()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.fd.AllocPagingHWPT(e.dev.DevID, e.ioas, &ioasid.HWPTOptions{Flags: ioasid.HWPTNestParent, Fault: q}); !errors.Is(err, unix.EOPNOTSUPP) {
		t.Errorf("a nest parent with a fault queue: %v, want EOPNOTSUPP", err)
	}
	parent, err := e.fd.AllocHWPT(e.dev.DevID, e.ioas, ioasid.HWPTNestParent)
	if err != nil {
		t.Fatal(err)
	}
	data := iommufdtest.Bytes(iommufdtest.HWPTSelftest{IOTLB: iommufdtest.IOTLBDefault})
	nested, err := e.fd.AllocNestedHWPT(e.dev.DevID, parent, iommufdtest.HWPTDataSelftest, data, &ioasid.HWPTOptions{Fault: q})
	if err != nil {
		t.Fatal(err)
	}

	const perm = uapi.IOMMU_PGFAULT_PERM_READ | uapi.IOMMU_PGFAULT_PERM_WRITE
	// Attached to the IOAS's own domain, which reports to no queue, the
	// fault goes nowhere.
	if err := e.mock.TriggerIOPF(e.dev.DevID, 1, 2, perm, 0xdead000); err != nil {
		t.Fatal(err)
	}
	if recs, err := q.Read(4, 200*time.Millisecond); err != nil || len(recs) != 0 {
		t.Errorf("a fault on a HWPT without a queue reached it: %+v, %v", recs, err)
	}

	if err := e.mock.Attach(e.dev, nested.ID()); err != nil {
		t.Fatal(err)
	}
	if err := e.mock.TriggerIOPF(e.dev.DevID, 1, 2, perm, 0xdeadb000); err != nil {
		t.Fatal(err)
	}
	recs, err := q.Read(4, 5*time.Second)
	if err != nil || len(recs) != 1 {
		t.Fatalf("reading the fault: %+v, %v; want one record", recs, err)
	}
	r := recs[0]
	want := ioasid.Fault{Flags: uapi.IOMMU_PGFAULT_FLAGS_PASID_VALID | uapi.IOMMU_PGFAULT_FLAGS_LAST_PAGE,
		DevID: e.dev.DevID, PASID: 1, Group: 2, Perm: perm, Addr: 0xdeadb000, Cookie: r.Cookie}
	if r != want {
		t.Errorf("fault record %+v, want %+v", r, want)
	}

	if err := q.Respond(r.Cookie+1, uapi.IOMMUFD_PAGE_RESP_SUCCESS); !errors.Is(err, unix.EINVAL) {
		t.Errorf("answering a cookie that is not pending: %v, want EINVAL", err)
	}
	if err := q.Respond(r.Cookie, 7); !errors.Is(err, unix.EINVAL) {
		t.Errorf("answering with an unknown code: %v, want EINVAL", err)
	}
	if err := q.Respond(r.Cookie, uapi.IOMMUFD_PAGE_RESP_SUCCESS); err != nil {
		t.Errorf("the right answer after two refused ones: %v", err)
	}
	if err := q.Respond(r.Cookie, uapi.IOMMUFD_PAGE_RESP_SUCCESS); !errors.Is(err, unix.EINVAL) {
		t.Errorf("answering twice: %v, want EINVAL", err)
	}
	if recs, err := q.Read(4, 200*time.Millisecond); err != nil || len(recs) != 0 {
		t.Errorf("the queue after the answer: %+v, %v; want empty", recs, err)
	}

	// A second fault, answered INVALID (the kernel may reuse the cookie).
	if err := e.mock.TriggerIOPF(e.dev.DevID, 1, 3, uapi.IOMMU_PGFAULT_PERM_READ, 0xbeef000); err != nil {
		t.Fatal(err)
	}
	recs, err = q.Read(4, 5*time.Second)
	if err != nil || len(recs) != 1 || recs[0].Group != 3 {
		t.Fatalf("the second fault: %+v, %v", recs, err)
	}
	if err := q.Respond(recs[0].Cookie, uapi.IOMMUFD_PAGE_RESP_INVALID); err != nil {
		t.Error(err)
	}

	// The HWPT holds the queue: its destroy is refused until the HWPT is
	// gone, and the retried Close then succeeds.
	if err := q.Close(); !errors.Is(err, unix.EBUSY) {
		t.Errorf("closing a queue a HWPT reports to: %v, want EBUSY", err)
	}
	if err := e.mock.Attach(e.dev, e.ioas.ID()); err != nil {
		t.Fatal(err)
	}
	closeAll(t, nested, parent, q)
}

// TestMockReservedRanges: ADD_RESERVED carves a hole out of the ranges the
// IOAS reports, mapping into it is refused and MapAnywhere avoids it.
func TestMockReservedRanges(t *testing.T) {
	e := openMock(t, 0)
	ranges, err := e.ioas.IOVARanges()
	if err != nil {
		t.Fatal(err)
	}
	aperture := []dma.Range{{Start: iommufdtest.ApertureStart, Last: iommufdtest.ApertureLast}}
	if fmt.Sprint(ranges) != fmt.Sprint(aperture) {
		t.Fatalf("IOVA ranges %v, want the mock aperture %v", ranges, aperture)
	}
	const mib = 1 << 20
	hole := uint64(iommufdtest.ApertureStart + mib)
	if err := e.mock.AddReserved(e.ioas, hole, mib); err != nil {
		t.Fatal(err)
	}
	ranges, err = e.ioas.IOVARanges()
	if err != nil {
		t.Fatal(err)
	}
	want := []dma.Range{{Start: iommufdtest.ApertureStart, Last: hole - 1}, {Start: hole + mib, Last: iommufdtest.ApertureLast}}
	if fmt.Sprint(ranges) != fmt.Sprint(want) {
		t.Errorf("IOVA ranges after reserving %#x+1MiB: %v, want %v", hole, ranges, want)
	}
	mem := anon(t, 2*mib)
	if err := e.ioas.Map(hole-mib/2, mem[:mib], dma.Read); err == nil {
		e.ioas.Unmap(hole-mib/2, mib)
		t.Error("a mapping across the reserved range succeeded")
	}
	iova, err := e.ioas.MapAnywhere(mem, dma.Read)
	if err != nil {
		t.Fatal(err)
	}
	if iova < hole+mib && iova+2*mib > hole {
		t.Errorf("MapAnywhere chose %#x+2MiB, across the reserved %#x+1MiB", iova, hole)
	}
	if err := e.mock.AddReserved(e.ioas, iova, mib); !errors.Is(err, unix.EADDRINUSE) {
		t.Errorf("reserving a mapped range: %v, want EADDRINUSE", err)
	}
	if err := e.ioas.Unmap(iova, 2*mib); err != nil {
		t.Error(err)
	}
}

// TestMockMemoryPaths: with the temporary memory limit at its minimum,
// iommufd pins a 4 MiB mapping in tiny batches and the mock domain still
// maps every page right; with the kernel's fault injection failing each
// allocation in turn, IOAS_MAP fails with ENOMEM named as such and leaves
// nothing mapped, and the same map then succeeds.
func TestMockMemoryPaths(t *testing.T) {
	e := openMock(t, 0)
	defer func() {
		if err := e.mock.SetTempMemoryLimit(65536); err != nil {
			t.Error(err)
		}
	}()
	if err := e.mock.SetTempMemoryLimit(8); !errors.Is(err, unix.EINVAL) {
		t.Errorf("a limit below one batch element: %v, want EINVAL", err)
	}
	if err := e.mock.SetTempMemoryLimit(32); err != nil {
		t.Fatal(err)
	}
	const size = 4 << 20
	iova := uint64(iommufdtest.ApertureStart)
	mem := anon(t, size)
	for i := 0; i < size; i += os.Getpagesize() {
		mem[i] = byte(i >> 12) // distinct pages, each faulted in
	}
	if err := e.ioas.Map(iova, mem, dma.Read|dma.Write); err != nil {
		t.Fatal(err)
	}
	if err := e.mock.CheckMap(e.dev.HWPTID, iova, mem); err != nil {
		t.Errorf("4 MiB pinned in 32-byte batches: %v", err)
	}
	if err := e.ioas.Unmap(iova, size); err != nil {
		t.Fatal(err)
	}

	// Fault injection: each of IOAS_MAP's failure points in turn, at the
	// default batch size, on 64 KiB.
	if err := e.mock.SetTempMemoryLimit(65536); err != nil {
		t.Fatal(err)
	}
	mem = mem[:64<<10]
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	failNth := fmt.Sprintf("/proc/self/task/%d/fail-nth", unix.Gettid())
	failures, enomem, points := 0, 0, 0
	for nth := 1; nth <= 200; nth++ {
		if err := os.WriteFile(failNth, []byte(strconv.Itoa(nth)), 0); err != nil {
			t.Fatal(err)
		}
		err := e.ioas.Map(iova, mem, dma.Read|dma.Write)
		left, rerr := os.ReadFile(failNth)
		os.WriteFile(failNth, []byte("0"), 0)
		if rerr != nil {
			t.Fatal(rerr)
		}
		fired := strings.TrimSpace(string(left)) == "0"
		if err == nil {
			if uerr := e.ioas.Unmap(iova, uint64(len(mem))); uerr != nil {
				t.Fatal(uerr)
			}
			if !fired {
				t.Logf("IOAS_MAP of 64 KiB passes %d fault-injection points", nth-1)
				points = nth - 1
				break
			}
			continue // an injected failure the kernel recovered from
		}
		failures++
		// iommufd's injection points fail with ENOMEM where they stand for
		// an allocation, and with EFAULT, ENOENT or EINVAL elsewhere.
		if errors.Is(err, unix.ENOMEM) {
			enomem++
		} else if !errors.Is(err, unix.EFAULT) && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
			t.Errorf("failure point %d: %v; not an errno iommufd injects", nth, err)
		}
		var oe *vfioerr.OpError
		if !fired || !errors.As(err, &oe) || oe.Op != "IOMMU_IOAS_MAP" {
			t.Errorf("failure point %d: %v (injected: %v); want an OpError of IOMMU_IOAS_MAP", nth, err, fired)
		}
		if uerr := e.ioas.Unmap(iova, uint64(len(mem))); !errors.Is(uerr, unix.ENOENT) {
			t.Errorf("failure point %d left a mapping behind: unmap = %v", nth, uerr)
		}
		if err := e.mock.CheckMap(e.dev.HWPTID, iova, mem[:os.Getpagesize()]); err == nil {
			t.Errorf("failure point %d left the mock domain mapping iova %#x", nth, iova)
		}
	}
	t.Logf("%d injected failures, %d of them ENOMEM", failures, enomem)
	if points == 0 {
		t.Error("IOAS_MAP failed at every one of 200 injection points")
	}
	if enomem == 0 {
		t.Error("no fault-injection point failed IOAS_MAP with ENOMEM")
	}
	if err := e.ioas.Map(iova, mem, dma.Read|dma.Write); err != nil {
		t.Errorf("mapping after the injected failures: %v", err)
	} else if err := e.ioas.Unmap(iova, uint64(len(mem))); err != nil {
		t.Error(err)
	}
}
