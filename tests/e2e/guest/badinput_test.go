package guest

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/dma"
	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/internal/sysfs"
	"github.com/vfioctl/vfioctl/vfio"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// expect fails unless err is non-nil, matches target (when given) and its
// message contains every word.
func expect(t *testing.T, what string, err error, target error, words ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: succeeded, want an error", what)
		return
	}
	if target != nil && !errors.Is(err, target) {
		t.Errorf("%s: %v, want errors.Is %v", what, err, target)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: %q does not mention %q", what, err, w)
		}
	}
}

func TestBadInput(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		e := openEdu(t, m)
		buf, err := dma.CreateBuffer(3 * 4096)
		if err != nil {
			t.Fatal(err)
		}
		defer buf.Close()
		iova, _ := e.alloc.Reserve(8192)
		mem := buf.Bytes()
		expect(t, "map at an unaligned IOVA", e.Mapper().Map(iova+1, mem[:4096], dma.ReadWrite), unix.EINVAL, "iova=")
		expect(t, "map an unaligned buffer", e.Mapper().Map(iova, mem[1:4097], dma.ReadWrite), unix.EINVAL)
		expect(t, "map an empty buffer", e.Mapper().Map(iova, nil, dma.ReadWrite), unix.EINVAL)
		if err := e.Mapper().Map(iova, mem[:8192], dma.ReadWrite); err != nil {
			t.Fatal(err)
		}
		expect(t, "map over a mapping", e.Mapper().Map(iova+4096, mem[8192:], dma.ReadWrite), unix.EEXIST, "overlaps")
		free, _ := e.alloc.Reserve(4096)
		expect(t, "unmap what is not mapped", e.Mapper().Unmap(free, 4096), unix.ENOENT)
		if err := e.Mapper().Unmap(iova, 8192); err != nil {
			t.Fatal(err)
		}
		expect(t, "unmap twice", e.Mapper().Unmap(iova, 8192), unix.ENOENT)
		if e.Container() != nil { // unmap-all (VFIO_DMA_UNMAP_FLAG_ALL)
			if err := e.Mapper().Map(iova, mem[:8192], dma.ReadWrite); err != nil {
				t.Fatal(err)
			}
			if n, err := e.Container().UnmapAll(); err != nil || n != 8192 {
				t.Errorf("UnmapAll = %d, %v; want 8192 bytes", n, err)
			}
			expect(t, "unmap after unmap-all", e.Mapper().Unmap(iova, 8192), unix.ENOENT)
		}

		expect(t, "region index out of range", func() error { _, err := e.Handle.Device().Region(99); return err }(), unix.EINVAL, "regions 0 to 8")
		expect(t, "the largest region index", func() error { _, err := e.Handle.Device().Region(^vfio.RegionIndex(0)); return err }(), unix.EINVAL, "regions 0 to 8")
		expect(t, "IRQ index out of range", func() error { _, err := e.Handle.Device().IRQInfo(7); return err }(), unix.EINVAL)
		cfg, _ := e.Handle.Device().Region(vfio.ConfigRegion)
		b := make([]byte, 4)
		_, err = cfg.ReadAt(b, int64(cfg.Size)-2)
		expect(t, "read past a region's end", err, unix.EINVAL, "region is")
		_, err = cfg.ReadAt(b, -4)
		expect(t, "read at a negative offset", err, unix.EINVAL)
		bar0, _ := e.Handle.Device().Region(vfio.BAR0Region)
		_, err = bar0.MapRange(0, bar0.Size+4096)
		expect(t, "mmap past a region's end", err, unix.EINVAL)
		if e.Group() != nil {
			_, err := e.Group().Device("0000:00:04.0")
			expect(t, "a device not in the group", err, nil, "VFIO_GROUP_GET_DEVICE_FD", "0000:00:04.0")
			_, err = e.Group().Device("../../x\x00")
			expect(t, "a malformed device name", err, unix.EINVAL)
		}
	})
}

func TestUseAfterClose(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		h, err := vfio.Open(eduAddr(t), &vfio.Options{Backend: m.backend, IOMMU: m.iommu})
		if err != nil {
			t.Fatal(err)
		}
		dev, mapper := h.Device(), h.Mapper()
		if err := h.Close(); err != nil {
			t.Fatal(err)
		}
		expect(t, "device double close", dev.Close(), vfioerr.ErrClosed)
		expect(t, "region after close", func() error { _, err := dev.Region(0); return err }(), vfioerr.ErrClosed)
		expect(t, "reset after close", dev.Reset(), vfioerr.ErrClosed)
		buf, _ := dma.CreateBuffer(4096)
		defer buf.Close()
		expect(t, "map after close", mapper.Map(0x100000, buf.Bytes(), dma.ReadWrite), vfioerr.ErrClosed)
		expect(t, "unmap-all after close", func() error { _, err := mapper.UnmapAll(); return err }(), vfioerr.ErrClosed)
		expect(t, "handle double close", h.Close(), vfioerr.ErrClosed)
		if h.Container() != nil {
			expect(t, "container double close", h.Container().Close(), vfioerr.ErrClosed)
		}
		if h.Group() != nil {
			expect(t, "group double close", h.Group().Close(), vfioerr.ErrClosed)
		}
		if h.IOMMUFD() != nil {
			expect(t, "iommufd double close", h.IOMMUFD().Close(), vfioerr.ErrClosed)
		}
		if h.IOAS() != nil {
			expect(t, "IOAS double close", h.IOAS().Close(), vfioerr.ErrClosed)
		}
		ev, _ := vfio.CreateEventfd()
		ev.Close()
		expect(t, "eventfd double close", ev.Close(), vfioerr.ErrClosed)
		expect(t, "eventfd wait after close", func() error { _, err := ev.Wait(time.Millisecond); return err }(), vfioerr.ErrClosed)
		b2, _ := dma.CreateBuffer(4096)
		b2.Close()
		expect(t, "buffer double close", b2.Close(), vfioerr.ErrClosed)
		if open := kernel.Open(); len(open) > 0 {
			t.Errorf("leaked: %v", open)
		}
	})
}

// requireICH9Group skips unless q35's ICH9 functions 00:1f.0 and 00:1f.2
// share an IOMMU group, as they must under intel-iommu (a boot there where
// they do not fails); under the other vIOMMUs each has its own.
func requireICH9Group(t *testing.T) {
	t.Helper()
	lpc, lerr := sysfs.DeviceGroup("0000:00:1f.0")
	sata, serr := sysfs.DeviceGroup("0000:00:1f.2")
	if lerr == nil && serr == nil && lpc == sata {
		return
	}
	if Profile == "intel" {
		t.Fatalf("under intel-iommu the ICH9 functions share a group; here 00:1f.0 is in %d (%v), 00:1f.2 in %d (%v)", lpc, lerr, sata, serr)
	}
	t.Skipf("the ICH9 functions do not share a group under %s: 00:1f.0 in %d (%v), 00:1f.2 in %d (%v)", Profile, lpc, lerr, sata, serr)
}

// q35's ICH9 functions 00:1f.0 (LPC, no driver), 00:1f.2 (SATA, ahci) and
// 00:1f.3 (SMBus) share one IOMMU group under intel-iommu: binding 00:1f.0
// alone leaves the group not viable because of ahci.
func TestGroupNotViable(t *testing.T) {
	requireICH9Group(t)
	const lpc = "0000:00:1f.0"
	n, err := sysfs.DeviceGroup(lpc)
	if err != nil {
		t.Fatal(err)
	}
	dev := "/sys/bus/pci/devices/" + lpc
	// Bind by hand, as a careless tool would (pci.Bind refuses: see the pci tests).
	for _, w := range [][2]string{{dev + "/driver_override", "vfio-pci"}, {"/sys/bus/pci/drivers_probe", lpc}} {
		if err := os.WriteFile(w[0], []byte(w[1]), 0); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		os.WriteFile(dev+"/driver/unbind", []byte(lpc), 0)
		os.WriteFile(dev+"/driver_override", []byte("\n"), 0)
	})
	g, err := vfio.OpenGroup(n)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	c, err := vfio.OpenContainer()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = g.SetContainer(c)
	expect(t, "SetContainer on a non-viable group", err, vfioerr.ErrGroupNotViable, "0000:00:1f.2", "ahci")
	var nv *vfioerr.GroupNotViableError
	if !errors.As(err, &nv) || nv.Group != n || len(nv.Blockers) != 1 {
		t.Errorf("error %v: want one blocker in group %d", err, n)
	}
	// Every backend, the cdev one included, names the blocker and blames
	// nothing else: this IOMMU has interrupt remapping.
	g.Close()
	c.Close()
	forModes(t, func(t *testing.T, m mode) {
		h, err := vfio.Open(lpc, &vfio.Options{Backend: m.backend, IOMMU: m.iommu})
		if err == nil {
			h.Close()
		}
		expect(t, "open in a non-viable group", err, vfioerr.ErrGroupNotViable, lpc, "0000:00:1f.2", "ahci")
		if err != nil && strings.Contains(err.Error(), "interrupt remapping") {
			t.Errorf("%v: blames interrupt remapping, which this IOMMU has", err)
		}
		if open := kernel.Open(); len(open) > 0 {
			t.Errorf("a refused open leaked %v", open)
		}
	})
}

// TestCdevNotBound: asking for the cdev of a device on its host driver says
// that, not that the kernel is too old.
func TestCdevNotBound(t *testing.T) {
	nic := findDevice(t, wantDevices["e1000e"])
	if drv := sysfsDriver(nic); drv != "e1000e" {
		t.Fatalf("%s is on %q: every test gives the NIC back to e1000e, so one before this did not", nic, drv)
	}
	_, err := vfio.Open(nic, &vfio.Options{Backend: vfio.Cdev})
	expect(t, "cdev of a device on e1000e", err, nil, nic, "bound to e1000e, not vfio-pci")
	if errors.Is(err, vfioerr.ErrNotSupported) {
		t.Errorf("%v: reported as not supported by the kernel", err)
	}
}

// TestUnsafeInterruptsRefused runs in the virtio-iommu boot without
// allow_unsafe_interrupts (TestVM/legacy/virtio-no-unsafe-interrupts):
// virtio-iommu has no interrupt remapping, so every mode must be refused
// with EPERM and an error that says why and what to do.
func TestUnsafeInterruptsRefused(t *testing.T) {
	if os.Getenv("VFIOCTL_EXPECT_NO_UNSAFE") == "" {
		t.Skip("runs in its own boot: TestVM/legacy/virtio-no-unsafe-interrupts")
	}
	// Not forModes: its probe opens every backend, which this boot refuses.
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			h, err := vfio.Open(eduAddr(t), &vfio.Options{Backend: m.backend, IOMMU: m.iommu})
			if err == nil {
				h.Close()
			}
			expect(t, "open without interrupt remapping", err, unix.EPERM, "interrupt remapping", "allow_unsafe_interrupts=1")
			if open := kernel.Open(); len(open) > 0 {
				t.Errorf("a refused open leaked %v", open)
			}
		})
	}
}
