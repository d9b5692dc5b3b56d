package guest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/dma"
	"github.com/vfioctl/vfioctl/edu"
	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/internal/sysfs"
	"github.com/vfioctl/vfioctl/ioasid"
	"github.com/vfioctl/vfioctl/uapi"
	"github.com/vfioctl/vfioctl/vfio"
	"github.com/vfioctl/vfioctl/vfioerr"
)

var cdevMode = mode{"iommufd", vfio.Cdev, 0}

// TestIOASCopy maps a buffer in IOAS A, copies the mapping into IOAS B,
// moves the device to B and DMAs through the copy.
func TestIOASCopy(t *testing.T) {
	e := openEdu(t, cdevMode)
	a := e.IOAS()
	buf, err := dma.CreateBuffer(8192)
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	const iovaA, iovaB = 0x100000, 0x300000
	if err := a.Map(iovaA, buf.Bytes(), dma.ReadWrite); err != nil {
		t.Fatal(err)
	}
	b, err := e.IOMMUFD().AllocIOAS()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := a.Copy(b, iovaB, iovaA, 8192, dma.ReadWrite); err != nil {
		t.Fatal(err)
	}
	if err := e.Handle.Device().DetachPT(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Handle.Device().AttachPT(b.ID()); err != nil {
		t.Fatal(err)
	}
	if err := e.Roundtrip(buf, iovaB, 1500); err != nil {
		t.Fatalf("DMA through the copied mapping: %v", err)
	}
	// And the copy is a real second mapping: unmapping it in B blocks DMA.
	if err := b.Unmap(iovaB, 8192); err != nil {
		t.Fatal(err)
	}
	if err := e.Roundtrip(buf, iovaB, 64); err == nil {
		t.Fatal("DMA through an unmapped IOVA of B came back intact")
	}
	if err := e.Handle.Device().DetachPT(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Handle.Device().AttachPT(a.ID()); err != nil {
		t.Fatal(err)
	}
}

// reservedRegions reads /sys/kernel/iommu_groups/N/reserved_regions.
func reservedRegions(t *testing.T, group int) []dma.Range {
	f, err := os.Open(fmt.Sprintf("/sys/kernel/iommu_groups/%d/reserved_regions", group))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []dma.Range
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) != 3 || fl[2] == "direct-relaxable" {
			continue
		}
		s, _ := strconv.ParseUint(fl[0], 0, 64)
		l, _ := strconv.ParseUint(fl[1], 0, 64)
		out = append(out, dma.Range{Start: s, Last: l})
	}
	return out
}

// TestIOVARangesAndHWInfo: the IOAS ranges leave out every reserved region
// of the group, and GET_HW_INFO reports what the vIOMMU is (intel: the
// VT-d cap/ecap registers sysfs shows).
func TestIOVARangesAndHWInfo(t *testing.T) {
	e := openEdu(t, cdevMode)
	ranges, align, err := e.IOAS().Ranges()
	if err != nil {
		t.Fatal(err)
	}
	if align != 4096 || len(ranges) == 0 {
		t.Fatalf("ranges %v alignment %#x", ranges, align)
	}
	grp, _ := sysfs.DeviceGroup(e.Handle.Device().Name())
	resv := reservedRegions(t, grp)
	if len(resv) == 0 {
		t.Fatalf("group %d reports no reserved regions (the MSI window at least)", grp)
	}
	for _, r := range ranges {
		for _, x := range resv {
			if r.Start <= x.Last && x.Start <= r.Last {
				t.Errorf("IOVA range %v overlaps reserved region %v", r, x)
			}
		}
	}
	info, err := e.IOMMUFD().HWInfo(e.DevID())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ranges %v, reserved %v, hw info %s caps %#x", ranges, resv, info.TypeName(), info.Capabilities)
	switch Profile {
	case "intel":
		if info.VTD == nil {
			t.Fatalf("hw info type %s, want intel-vtd", info.TypeName())
		}
		iommus, _ := filepath.Glob("/sys/class/iommu/dmar*/intel-iommu")
		if len(iommus) != 1 {
			t.Fatalf("sysfs intel-iommu dirs: %v", iommus)
		}
		cap, _ := strconv.ParseUint(sysfsRead(t, iommus[0]+"/cap"), 16, 64)
		ecap, _ := strconv.ParseUint(sysfsRead(t, iommus[0]+"/ecap"), 16, 64)
		if info.VTD.CapReg != cap || info.VTD.EcapReg != ecap {
			t.Errorf("hw info cap %#x ecap %#x, sysfs cap %#x ecap %#x", info.VTD.CapReg, info.VTD.EcapReg, cap, ecap)
		}
	default:
		// Linux 6.12's AMD and virtio-iommu drivers report no typed info.
		if info.Type != uapi.IOMMU_HW_INFO_TYPE_NONE {
			t.Errorf("hw info type %s under %s", info.TypeName(), Profile)
		}
	}
}

// TestDirtyTracking checks both outcomes honestly: where the IOMMU reports
// dirty tracking, DMA writes set bits; where it does not, HWPT_ALLOC with
// DIRTY_TRACKING fails with ErrNotSupported.
func TestDirtyTracking(t *testing.T) {
	e := openEdu(t, cdevMode)
	info, err := e.IOMMUFD().HWInfo(e.DevID())
	if err != nil {
		t.Fatal(err)
	}
	hwpt, err := e.IOMMUFD().AllocHWPT(e.DevID(), e.IOAS(), ioasid.HWPTDirtyTracking)
	if !info.DirtyTracking() {
		if !errors.Is(err, vfioerr.ErrNotSupported) {
			t.Fatalf("%s reports no dirty tracking, but HWPT_ALLOC(DIRTY_TRACKING) = %v; want ErrNotSupported", Profile, err)
		}
		t.Logf("%s: no dirty tracking: %v", Profile, err)
		// A plain HWPT works, and the device attaches to it.
		plain, err := e.IOMMUFD().AllocHWPT(e.DevID(), e.IOAS(), 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.Handle.Device().AttachPT(plain.ID()); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Handle.Device().AttachPT(e.IOAS().ID()); err != nil {
			t.Fatal(err)
		}
		if err := plain.Close(); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	defer hwpt.Close()
	if _, err := e.Handle.Device().AttachPT(hwpt.ID()); err != nil {
		t.Fatal(err)
	}
	buf, iova := e.mapBuf(t, 8192)
	defer buf.Close()
	if err := hwpt.SetDirtyTracking(true); err != nil {
		t.Fatal(err)
	}
	e.dma(t, edu.Buffer, iova+4096, 64, edu.CmdToRAM)
	bm, err := hwpt.DirtyBitmap(iova, 8192, 4096, true)
	if err != nil {
		t.Fatal(err)
	}
	if bm[0] != 2 {
		t.Fatalf("dirty bitmap %b, want only page 1 dirty", bm[0])
	}
}

// TestNewerIoctls: ioctls added after 6.12 exist in the API and say which
// kernel they need.
func TestNewerIoctls(t *testing.T) {
	e := openEdu(t, cdevMode)
	viommu, err := e.IOMMUFD().VIOMMUByID(1) // none exists: the kernel must not get as far as looking
	if err != nil {
		t.Fatal(err)
	}
	defer viommu.Close()
	for name, call := range map[string]func() error{
		"6.13 IOMMU_IOAS_MAP_FILE":       func() error { return e.IOAS().MapFile(0x100000, 0, 0, 4096, dma.ReadWrite) },
		"6.14 IOMMU_IOAS_CHANGE_PROCESS": func() error { return e.IOMMUFD().ChangeProcess() },
		"6.13 IOMMU_VDEVICE_ALLOC":       func() error { _, err := viommu.AllocVDevice(e.DevID(), 0); return err },
		"6.15 IOMMU_VEVENTQ_ALLOC":       func() error { _, err := viommu.AllocEventQueue(0, 1); return err },
		"6.17 IOMMU_HW_QUEUE_ALLOC":      func() error { _, err := viommu.AllocHWQueue(0, 0, 0, 4096); return err },
	} {
		version, op, _ := strings.Cut(name, " ")
		err := call()
		if !errors.Is(err, vfioerr.ErrNotSupported) || !strings.Contains(err.Error(), "Linux "+version) || !strings.Contains(err.Error(), op) {
			t.Errorf("%s on 6.12: %v; want ErrNotSupported naming Linux %s", op, err, version)
		}
	}
}

// TestCompatIOASIsNative: the IOAS that the VFIO compat container uses is
// an ordinary IOAS. Set one natively (IOMMU_VFIO_IOAS), attach a group to
// the iommufd as its container, and DMA through native IOMMU_IOAS_MAP.
func TestCompatIOASIsNative(t *testing.T) {
	addr := eduAddr(t)
	requireBackend(t, vfio.GroupIOMMUFD)
	fd, err := ioasid.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	ioas, err := fd.AllocIOAS()
	if err != nil {
		t.Fatal(err)
	}
	if err := fd.SetCompatIOAS(ioas); err != nil {
		t.Fatal(err)
	}
	got, err := fd.CompatIOAS()
	if err != nil || got.ID() != ioas.ID() {
		t.Fatalf("CompatIOAS = %v, %v; want %d", got, err, ioas.ID())
	}
	n, _ := sysfs.DeviceGroup(addr)
	g, err := vfio.OpenGroup(n)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.SetContainer(fd); err != nil {
		t.Fatal(err)
	}
	defer g.UnsetContainer()
	d, err := g.Device(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ed, err := edu.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	defer ed.Close()
	buf, err := dma.CreateBuffer(8192)
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	if err := ioas.Map(0x200000, buf.Bytes(), dma.ReadWrite); err != nil {
		t.Fatal(err)
	}
	if err := ed.Roundtrip(buf, 0x200000, 1000); err != nil {
		t.Fatal(err)
	}
	if n, err := ioas.UnmapAll(); err != nil || n != 8192 {
		t.Fatalf("UnmapAll = %d, %v", n, err)
	}
}

// TestMemlockLimit: a process without CAP_IPC_LOCK whose RLIMIT_MEMLOCK is
// 1 MiB cannot pin 16 MiB: the error says RLIMIT_MEMLOCK and how to fix it,
// and nothing is left mapped. The child runs as nobody with the iommufd
// passed as fd 3.
func TestMemlockLimit(t *testing.T) {
	if os.Getenv("VFIOCTL_MEMLOCK_CHILD") != "" {
		memlockChild()
		return
	}
	e := openEdu(t, cdevMode)
	ifd, _ := e.IOMMUFD().FD()
	// Hand the child a dup: an *os.File owns its fd and its finalizer
	// would close the number under the iommufd's feet.
	dup, err := unix.Dup(ifd)
	if err != nil {
		t.Fatal(err)
	}
	passed := os.NewFile(uintptr(dup), "iommufd")
	defer passed.Close()
	exe, _ := os.Executable()
	cmd := exec.Command(exe, "-test.run=^TestMemlockLimit$")
	cmd.Env = append(os.Environ(), "VFIOCTL_MEMLOCK_CHILD=1", "VFIOCTL_IOAS="+strconv.Itoa(int(e.IOAS().ID())))
	cmd.ExtraFiles = []*os.File{passed}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "RLIMIT_MEMLOCK") || !strings.Contains(string(out), "ulimit -l") {
		t.Fatalf("child's map error does not explain the limit:\n%s", out)
	}
	if n, err := e.IOAS().UnmapAll(); err != nil || n != 0 {
		t.Fatalf("after the failed map, %d bytes are mapped (%v)", n, err)
	}
	t.Logf("child: %s", strings.TrimSpace(string(out)))
}

func memlockChild() {
	fail := func(f string, a ...any) { fmt.Printf(f+"\n", a...); os.Exit(1) }
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: 1 << 20, Max: 1 << 20}); err != nil {
		fail("setrlimit: %v", err)
	}
	fd, err := ioasid.NewFD(3)
	if err != nil {
		fail("%v", err)
	}
	ioas, err := fd.IOASByID(mustAtoi(os.Getenv("VFIOCTL_IOAS")))
	if err != nil {
		fail("%v", err)
	}
	buf, err := dma.CreateBuffer(16 << 20)
	if err != nil {
		fail("%v", err)
	}
	err = ioas.Map(0x1000000, buf.Bytes(), dma.ReadWrite)
	if err == nil || !errors.Is(err, unix.ENOMEM) {
		fail("16 MiB map with a 1 MiB RLIMIT_MEMLOCK: %v, want ENOMEM", err)
	}
	buf.Close()
	fd.Close()
	if open := kernel.Open(); len(open) > 0 {
		fail("leaked fds: %v", open)
	}
	fmt.Println(err)
	os.Exit(0)
}

func mustAtoi(s string) uint32 {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(err)
	}
	return uint32(n)
}

// TestType1DirtyPages: the legacy type1 container reports the migration
// capability; it marks every pinned page dirty (type1 cannot see what a
// device writes), which the test pins down exactly; iommufd's compat
// container does not offer it and says so.
func TestType1DirtyPages(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		if m.backend != vfio.Legacy && m.backend != vfio.IOMMUFDCompat || m.iommu != vfio.Type1v2 {
			t.Skip("type1v2 containers only")
		}
		e := openEdu(t, m)
		info, err := e.Container().Info()
		if err != nil {
			t.Fatal(err)
		}
		buf, iova := e.mapBuf(t, 8192)
		defer buf.Close()
		err = e.Container().StartDirtyTracking()
		if info.DirtyTracking == nil {
			if !errors.Is(err, vfioerr.ErrNotSupported) {
				t.Fatalf("no migration capability, but StartDirtyTracking = %v", err)
			}
			t.Logf("%s: %v", m.name, err)
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		defer e.Container().StopDirtyTracking()
		// The device really writes page 1: a pattern goes RAM -> edu from
		// page 0, page 1 is zeroed, edu writes it back into page 1.
		mem := buf.Bytes()
		for i := 0; i < 64; i++ {
			mem[i], mem[4096+i] = byte(0xa0+i), 0
		}
		e.dma(t, iova, edu.Buffer, 64, 0)
		e.dma(t, edu.Buffer, iova+4096, 64, edu.CmdToRAM)
		for i := 0; i < 64; i++ {
			if mem[4096+i] != byte(0xa0+i) {
				t.Fatalf("byte %d of page 1 is %#x: the device's write did not happen", i, mem[4096+i])
			}
		}
		// type1 cannot see device writes: it reports every page pinned for
		// the device dirty, on every read (the kernel re-marks them after
		// each report). Exactly the two mapped pages, twice.
		for read := 1; read <= 2; read++ {
			bm, err := e.Container().DirtyBitmap(iova, 8192, 4096)
			if err != nil {
				t.Fatal(err)
			}
			if len(bm) != 1 || bm[0] != 0b11 {
				t.Fatalf("read %d: dirty bitmap %b, want 11 (both pinned pages)", read, bm)
			}
		}
		t.Logf("%s: migration cap %+v; device write verified; bitmap 11 on each read", m.name, *info.DirtyTracking)
	})
}

// TestFaultQueueAndHotResetInfo: a fault queue (6.11) allocates and closes
// cleanly (no vIOMMU here delivers I/O page faults to read), and hot reset
// info either lists the affected devices or says why none is possible.
func TestFaultQueueAndHotResetInfo(t *testing.T) {
	e := openEdu(t, cdevMode)
	q, err := e.IOMMUFD().AllocFaultQueue()
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	deps, err := e.Handle.Device().HotResetInfo()
	switch {
	case err == nil:
		found := false
		for _, d := range deps {
			found = found || d.Address() == e.Handle.Device().Name()
		}
		if !found {
			t.Errorf("hot reset info %+v does not include the device itself", deps)
		}
	case errors.Is(err, unix.ENODEV):
		t.Logf("no bus or slot reset for %s: %v", e.Handle.Device().Name(), err)
	default:
		t.Fatalf("HotResetInfo: %v", err)
	}
}
