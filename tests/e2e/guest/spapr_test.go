package guest

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/dma"
	"github.com/vfioctl/vfioctl/edu"
	"github.com/vfioctl/vfioctl/internal/sysfs"
	"github.com/vfioctl/vfioctl/ioasid"
	"github.com/vfioctl/vfioctl/pci"
	"github.com/vfioctl/vfioctl/uapi"
	"github.com/vfioctl/vfioctl/vfio"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// spaprModes are the container models of the pSeries guest, where the
// SPAPR TCE IOMMU is the only one VFIO drives: the tests that run for
// every mode run for these there.
var spaprModes = []mode{
	{"spapr_tce_v2", vfio.Legacy, vfio.SPAPRTCEv2},
	{"spapr_tce_v1", vfio.Legacy, vfio.SPAPRTCE},
}

func init() {
	if Profile == "pseries" {
		modes = spaprModes
	}
}

// spaprContainer opens edu's group into a fresh container set to t and
// returns its SPAPR side; edu itself is opened and mapped (BAR0, bus
// mastering) through the group.
func spaprContainer(t *testing.T, addr string, typ vfio.IOMMUType) (*vfio.SPAPR, *edu.Edu) {
	t.Helper()
	c, err := vfio.OpenContainer()
	if err != nil {
		t.Fatal(err)
	}
	n, err := sysfs.DeviceGroup(addr)
	if err != nil {
		t.Fatal(err)
	}
	g, err := vfio.OpenGroup(n)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.SetContainer(c); err != nil {
		t.Fatal(err)
	}
	if err := c.SetIOMMU(typ); err != nil {
		t.Fatal(err)
	}
	s, err := c.SPAPR()
	if err != nil {
		t.Fatal(err)
	}
	d, err := g.Device(addr)
	if err != nil {
		t.Fatal(err)
	}
	e, err := edu.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.Close()
		d.Close()
		g.UnsetContainer()
		g.Close()
		c.Close()
	})
	return s, e
}

// roundtrip runs edu's DMA round trip through buf mapped at iova.
func roundtrip(t *testing.T, e *edu.Edu, buf *dma.Buffer, iova uint64) {
	t.Helper()
	if err := e.Roundtrip(buf, iova, 1500); err != nil {
		t.Fatalf("round trip through IOVA %#x: %v", iova, err)
	}
}

func wantErrno(t *testing.T, what string, err error, errno unix.Errno, says string) {
	t.Helper()
	if !errors.Is(err, errno) || !strings.Contains(err.Error(), says) {
		t.Fatalf("%s: %v, want %v saying %q", what, err, errno, says)
	}
	t.Logf("%s refused: %v", what, err)
}

func alloc(t *testing.T, n int) *dma.Buffer {
	t.Helper()
	b, err := dma.CreateBuffer(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// TestSPAPR (ppc64le pSeries) drives the SPAPR TCE container directly:
// the models it offers, GET_INFO, v2's memory registration, the default
// 32-bit window and a dynamic one (DDW) with a DMA round trip through
// each, maps outside every window, window removal, v1's enable, EEH, and
// the iommufd paths the platform cannot have.
func TestSPAPR(t *testing.T) {
	if Profile != "pseries" {
		t.Skip("runs in the pSeries boot (TestVM/ppc64le/pseries)")
	}
	addr := eduAddr(t)
	if os.Getpagesize() != 64<<10 {
		t.Errorf("guest page size %d, want 64 KiB (the kernel is built with PPC_64K_PAGES)", os.Getpagesize())
	}

	t.Run("extensions", func(t *testing.T) {
		c, err := vfio.OpenContainer()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for ext, want := range map[int]bool{uapi.VFIO_SPAPR_TCE_IOMMU: true, uapi.VFIO_SPAPR_TCE_v2_IOMMU: true,
			uapi.VFIO_TYPE1_IOMMU: false, uapi.VFIO_TYPE1v2_IOMMU: false} {
			if ok, err := c.CheckExtension(ext); err != nil || ok != want {
				t.Errorf("CHECK_EXTENSION(%d) = %v, %v; want %v", ext, ok, err, want)
			}
		}
		eeh, _ := c.CheckExtension(uapi.VFIO_EEH)
		t.Logf("VFIO_EEH extension: %v", eeh)
	})

	t.Run("v2", func(t *testing.T) {
		c, e := spaprContainer(t, addr, vfio.SPAPRTCEv2)
		info, err := c.Info()
		if err != nil {
			t.Fatal(err)
		}
		if info.DMA32Window.Start != 0 || info.DMA32Window.Last < 1<<28-1 || info.DDW == nil {
			t.Fatalf("GET_INFO: window %v, DDW %+v", info.DMA32Window, info.DDW)
		}
		if info.DDW.PageSizes&(4<<10|64<<10) != 4<<10|64<<10 || info.DDW.MaxWindows < 2 || info.DDW.Levels < 1 {
			t.Fatalf("DDW %+v: want 4K and 64K pages and two windows", *info.DDW)
		}
		t.Logf("default window %v, DDW page sizes %#x, %d windows, %d levels", info.DMA32Window, info.DDW.PageSizes, info.DDW.MaxWindows, info.DDW.Levels)

		a, b := alloc(t, 8192), alloc(t, 8192)
		// Nothing registered yet: the container maps nothing (EPERM).
		wantErrno(t, "map before any registration", c.Map(0x10000, a.Bytes(), dma.ReadWrite), unix.EPERM, "registered")
		if err := c.RegisterMemory(a.Bytes()); err != nil {
			t.Fatal(err)
		}
		wantErrno(t, "second registration", c.RegisterMemory(a.Bytes()), unix.EBUSY, "already registered")
		// b is not registered: v2 refuses to map it.
		wantErrno(t, "map of unregistered memory", c.Map(0x10000, b.Bytes(), dma.ReadWrite), unix.EINVAL, "registered")
		if err := c.Map(0x10000, a.Bytes(), dma.ReadWrite); err != nil {
			t.Fatal(err)
		}
		roundtrip(t, e, a, 0x10000)
		// 2 GiB is past the 1 GiB default window, and no other exists yet.
		wantErrno(t, "map outside every window", c.Map(2<<30, a.Bytes(), dma.ReadWrite), unix.ENXIO, "outside every DMA window")

		// A dynamic window of 64 KiB TCEs: the kernel chooses where.
		w, err := c.CreateWindow(16, 1<<30, 1)
		if err != nil {
			t.Fatal(err)
		}
		if w.Start < 1<<32 {
			t.Errorf("dynamic window %v: want it above 4 GiB", w.Range)
		}
		ranges, err := c.IOVARanges()
		if err != nil || len(ranges) != 2 || ranges[0] != info.DMA32Window || ranges[1] != w.Range {
			t.Fatalf("IOVA ranges %v, %v; want the default window and %v", ranges, err, w.Range)
		}
		if al, err := c.Alignment(); err != nil || al != 64<<10 {
			t.Errorf("alignment %#x, %v; want 64 KiB (the dynamic window's TCE page)", al, err)
		}
		big := alloc(t, 64<<10)
		if err := c.RegisterMemory(big.Bytes()); err != nil {
			t.Fatal(err)
		}
		if err := c.Map(w.Start+1<<20, big.Bytes(), dma.ReadWrite); err != nil {
			t.Fatal(err)
		}
		roundtrip(t, e, big, w.Start+1<<20)
		t.Logf("round trip through the dynamic window %v at %#x", w.Range, w.Start+1<<20)
		// A TCE is 64 KiB there: a 4 KiB-aligned IOVA is refused.
		wantErrno(t, "4 KiB-aligned map in a 64 KiB window", c.Map(w.Start+4096, big.Bytes(), dma.ReadWrite), unix.EINVAL, "TCE page size")
		if err := c.Unmap(w.Start+1<<20, 64<<10); err != nil {
			t.Fatal(err)
		}
		if err := c.RemoveWindow(w.Start); err != nil {
			t.Fatal(err)
		}
		wantErrno(t, "map into the removed window", c.Map(w.Start+1<<20, big.Bytes(), dma.ReadWrite), unix.ENXIO, "outside every DMA window")
		wantErrno(t, "removing it again", c.RemoveWindow(w.Start), unix.EINVAL, "no window")

		if err := c.Unmap(0x10000, uint64(a.Len())); err != nil {
			t.Fatal(err)
		}
		if err := c.UnregisterMemory(a.Bytes()); err != nil {
			t.Fatal(err)
		}
		wantErrno(t, "unregistering twice", c.UnregisterMemory(a.Bytes()), unix.ENOENT, "not a registration")
		if err := c.UnregisterMemory(big.Bytes()); err != nil {
			t.Fatal(err)
		}
		// v1's switch does not exist on v2.
		if err := c.Enable(); err == nil {
			t.Error("Enable on a v2 container succeeded")
		}
	})

	t.Run("v2-mapper", func(t *testing.T) {
		// The Mapper vfio.Open gives on POWER registers what it maps and
		// unregisters it on the last unmap: afterwards the container
		// holds no registration (the raw unregister finds none).
		h, err := vfio.Open(addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		if h.Backend() != vfio.Legacy || h.Container().IOMMU() != vfio.SPAPRTCEv2 {
			t.Fatalf("vfio.Open chose %s/%s, want legacy/spapr-tce-v2", h.Backend(), h.Container().IOMMU())
		}
		e, err := edu.Open(h.Device())
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		buf := alloc(t, 8192)
		// Two IOVAs for one buffer's pages: one registration serves both.
		if err := h.Mapper().Map(0x20000, buf.Bytes(), dma.ReadWrite); err != nil {
			t.Fatal(err)
		}
		if err := h.Mapper().Map(0x40000, buf.Bytes()[:4096], dma.Read); err != nil {
			t.Fatal(err)
		}
		roundtrip(t, e, buf, 0x20000)
		page := unsafe.Slice(&buf.Bytes()[0], os.Getpagesize())
		if err := h.Mapper().Unmap(0x20000, uint64(buf.Len())); err != nil {
			t.Fatal(err)
		}
		// Still mapped at 0x40000: still registered (by the mapper).
		wantErrno(t, "registering pages the mapper holds", spaprOf(t, h).RegisterMemory(page), unix.EBUSY, "already registered")
		if err := h.Mapper().Unmap(0x40000, 4096); err != nil {
			t.Fatal(err)
		}
		// The last unmap unregistered them: they register anew.
		if err := spaprOf(t, h).RegisterMemory(page); err != nil {
			t.Fatalf("registering the pages after the mapper's last unmap: %v", err)
		}
		// Pages the caller registered are mapped as they are, and stay.
		if err := h.Mapper().Map(0x20000, buf.Bytes(), dma.ReadWrite); err != nil {
			t.Fatal(err)
		}
		roundtrip(t, e, buf, 0x20000)
		if err := h.Mapper().Unmap(0x20000, uint64(buf.Len())); err != nil {
			t.Fatal(err)
		}
		if err := spaprOf(t, h).UnregisterMemory(page); err != nil {
			t.Fatalf("the caller's registration after the mapper's unmap: %v", err)
		}
		wantErrno(t, "unmapping what the mapper never mapped", h.Mapper().Unmap(0x80000, 4096), unix.ENOENT, "not inside any mapping")
	})

	t.Run("v1", func(t *testing.T) {
		c, e := spaprContainer(t, addr, vfio.SPAPRTCE)
		info, err := c.Info()
		if err != nil || info.DDW != nil {
			t.Fatalf("v1 GET_INFO %+v, %v: want no DDW", info, err)
		}
		buf := alloc(t, 8192)
		wantErrno(t, "map before Enable", c.Map(0x10000, buf.Bytes(), dma.ReadWrite), unix.EPERM, "not enabled")
		if err := c.Enable(); err != nil {
			t.Fatal(err)
		}
		// v1 pins on map: no registration needed (nor offered).
		if err := c.Map(0x10000, buf.Bytes(), dma.ReadWrite); err != nil {
			t.Fatal(err)
		}
		roundtrip(t, e, buf, 0x10000)
		if err := c.RegisterMemory(buf.Bytes()); err == nil {
			t.Error("RegisterMemory on a v1 container succeeded")
		}
		if _, err := c.CreateWindow(16, 1<<30, 1); err == nil {
			t.Error("CreateWindow on a v1 container succeeded")
		}
		if err := c.Unmap(0x10000, uint64(buf.Len())); err != nil {
			t.Fatal(err)
		}
		if err := c.Disable(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("eeh", func(t *testing.T) {
		c, _ := spaprContainer(t, addr, vfio.SPAPRTCEv2)
		ok, _ := c.Container().CheckExtension(uapi.VFIO_EEH)
		_, err := c.EEH(vfio.EEHEnable)
		st, serr := c.EEH(vfio.EEHGetState)
		t.Logf("EEH extension %v; enable: %v; state %v, %v", ok, err, st, serr)
		if !ok {
			// No EEH on these PHBs: every PE op is ENODEV (no eeh_pe).
			if !errors.Is(err, unix.ENODEV) || !errors.Is(serr, unix.ENODEV) {
				t.Fatalf("EEH enable %v, get state %v where the container offers no VFIO_EEH: want ENODEV from both", err, serr)
			}
			return
		}
		if err != nil || serr != nil || st != vfio.EEHStateNormal {
			t.Fatalf("EEH enable %v, state %v %v: want a normal PE", err, st, serr)
		}
	})

	t.Run("cli", func(t *testing.T) {
		doctor := mustExit(t, 0, "doctor")
		for _, want := range []string{"spapr-tce-v2, spapr-tce", "none on POWER", "not used on POWER"} {
			if !strings.Contains(doctor, want) {
				t.Errorf("doctor does not say %q:\n%s", want, doctor)
			}
		}
		var groups []pci.Group
		if err := json.Unmarshal([]byte(mustExit(t, 0, "groups", "--json")), &groups); err != nil {
			t.Fatal(err)
		}
		seen := 0
		for _, g := range groups {
			for _, d := range g.Devices {
				for _, a := range eduAddrs(t) {
					if d == a {
						seen++
						if len(g.Devices) != 1 || !g.Viable {
							t.Errorf("edu %s: group %+v, want it alone and viable (each edu has its own PHB)", a, g)
						}
					}
				}
			}
		}
		if seen != 2 {
			t.Errorf("groups lists %d edus, want 2:\n%+v", seen, groups)
		}
		if info := mustExit(t, 0, "info", addr); !strings.Contains(info, "BAR0") {
			t.Errorf("info:\n%s", info)
		}
		var rep struct {
			Backend, Roundtrip string
			IOMMU              string      `json:"iommu_model"`
			Ranges             []dma.Range `json:"iova_ranges"`
		}
		if err := json.Unmarshal([]byte(mustExit(t, 0, "dma-test", "--json", addr)), &rep); err != nil {
			t.Fatal(err)
		}
		if rep.Backend != "legacy" || rep.IOMMU != "spapr-tce-v2" || rep.Roundtrip != "ok" || len(rep.Ranges) != 1 || rep.Ranges[0].Last != 1<<30-1 {
			t.Errorf("dma-test: %+v, want legacy, spapr-tce-v2, the default window, a round trip", rep)
		}
	})

	t.Run("no-iommufd", func(t *testing.T) {
		// The design's shim, live: /dev/iommu exists and maps, but no
		// device can reach it, and the library says why.
		if _, err := os.Stat("/dev/vfio/devices"); err == nil {
			t.Error("/dev/vfio/devices exists: the kernel built device cdevs beside SPAPR TCE")
		}
		if _, err := vfio.CdevPath(addr); !errors.Is(err, vfioerr.ErrNotSupported) || !strings.Contains(err.Error(), "SPAPR") {
			t.Errorf("CdevPath: %v", err)
		}
		fd, err := ioasid.Open()
		if err != nil {
			t.Fatal(err)
		}
		defer fd.Close()
		ioas, err := fd.AllocIOAS()
		if err != nil {
			t.Fatal(err)
		}
		buf := alloc(t, 64<<10)
		if err := ioas.Map(0x10000, buf.Bytes(), dma.ReadWrite); err != nil {
			t.Fatalf("IOAS map with no device: %v", err)
		}
		n, _ := sysfs.DeviceGroup(addr)
		g, err := vfio.OpenGroup(n)
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		// Linux takes the iommufd as the group's container (it makes the
		// compat IOAS) and refuses when the device is opened: binding it
		// needs a domain SPAPR cannot give.
		err = g.SetContainer(fd)
		if err == nil {
			defer g.UnsetContainer()
			var d *vfio.Device
			if d, err = g.Device(addr); err == nil {
				d.Close()
				t.Fatal("a device of the group opened through /dev/iommu")
			}
		}
		if !strings.Contains(err.Error(), "SPAPR TCE container") {
			t.Errorf("the group's /dev/iommu error does not say why: %v", err)
		}
		t.Logf("group -> /dev/iommu refused: %v", err)
	})
}

// spaprJoinRefused (pSeries): vfio.Open refuses to put the second edu's
// group into the first's container, saying why, and the kernel proves
// it right: with both groups attached, the first map fails (the
// hypervisor's window table of one PE cannot be set into the other).
// Each edu in a container of its own works.
func spaprJoinRefused(t *testing.T, addrs []string, m mode) {
	h1, err := vfio.Open(addrs[0], &vfio.Options{Backend: m.backend, IOMMU: m.iommu})
	if err != nil {
		t.Fatal(err)
	}
	h2, err := vfio.Open(addrs[1], &vfio.Options{Join: h1})
	if err == nil {
		h2.Close()
	}
	h1.Close()
	if !errors.Is(err, vfioerr.ErrNotSupported) || !strings.Contains(err.Error(), "pSeries") {
		t.Fatalf("joining a second group: %v, want ErrNotSupported naming pSeries", err)
	}
	t.Logf("join refused: %v", err)

	// Where the kernel refuses, measured on Linux 6.12: v2 attaches both
	// groups, sets its IOMMU and registers, and refuses the map (EPERM:
	// the window the first map creates cannot be set into the second
	// PE); v1 refuses VFIO_SET_IOMMU itself (EBUSY) with two groups.
	buf := alloc(t, 8192)
	step, err := bothGroupsMap(t, addrs, m, buf)
	wantStep, wantErr := "map", unix.EPERM
	if m.iommu == vfio.SPAPRTCE {
		wantStep, wantErr = "SetIOMMU", unix.EBUSY
	}
	if step != wantStep || !errors.Is(err, wantErr) {
		t.Fatalf("two pSeries groups in one %s container: %q failed with %v; want every step before %q to succeed and it to fail with %v", m.iommu, step, err, wantStep, wantErr)
	}
	t.Logf("the kernel with both groups in one %s container: every step before %s succeeds, %s is refused: %v", m.iommu, step, step, err)
	eduWorks(t, addrs[1], m)
}

// bothGroupsMap attaches the groups of addrs to one container of m's
// model, sets its IOMMU, registers or enables, and maps buf, each step on
// its own; it returns the step that failed ("map" for the map or its
// unmap, "" with a nil error when all succeeded), with everything closed
// again.
func bothGroupsMap(t *testing.T, addrs []string, m mode, buf *dma.Buffer) (string, error) {
	c, err := vfio.OpenContainer()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, a := range addrs {
		n, _ := sysfs.DeviceGroup(a)
		g, err := vfio.OpenGroup(n)
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		if err := g.SetContainer(c); err != nil {
			return "attaching group " + a, err
		}
		defer g.UnsetContainer()
	}
	if err := c.SetIOMMU(m.iommu); err != nil {
		return "SetIOMMU", err
	}
	s, err := c.SPAPR()
	if err != nil {
		t.Fatal(err)
	}
	if m.iommu == vfio.SPAPRTCEv2 {
		if err := s.RegisterMemory(unsafe.Slice(&buf.Bytes()[0], os.Getpagesize())); err != nil {
			return "RegisterMemory", err
		}
		defer s.UnregisterMemory(unsafe.Slice(&buf.Bytes()[0], os.Getpagesize()))
	} else if err := s.Enable(); err != nil {
		return "Enable", err
	}
	if err := c.Map(0x10000, buf.Bytes(), dma.ReadWrite); err != nil {
		return "map", err
	}
	if err := c.Unmap(0x10000, uint64(buf.Len())); err != nil {
		return "map", err
	}
	return "", nil
}

// spaprOf is the SPAPR side of h's container.
func spaprOf(t *testing.T, h *vfio.Handle) *vfio.SPAPR {
	t.Helper()
	s, err := h.Container().SPAPR()
	if err != nil {
		t.Fatal(err)
	}
	return s
}
