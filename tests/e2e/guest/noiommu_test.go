package guest

import (
	"errors"
	"net"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/dma"
	"github.com/vfioctl/vfioctl/edu"
	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/pci"
	"github.com/vfioctl/vfioctl/vfio"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// TestNoIOMMU runs in its own boot with no vIOMMU and
// vfio.enable_unsafe_noiommu_mode=1 (TestVM/KERNEL/noiommu). vfioctl says
// the host is in no-IOMMU mode and refuses to bind unless asked; the
// library refuses to open unless asked; asked, every backend the kernel
// offers opens the device with no Mapper, and edu round-trips DMA through
// physical addresses read from /proc/self/pagemap.
func TestNoIOMMU(t *testing.T) {
	if os.Getenv("VFIOCTL_EXPECT_NOIOMMU") == "" {
		t.Skip("runs in its own boot: TestVM/KERNEL/noiommu")
	}
	addr := findDevice(t, wantDevices["edu"])
	if out := mustExit(t, 0, "doctor"); !strings.Contains(out, "no-IOMMU mode is on") {
		t.Errorf("doctor does not say the host is in no-IOMMU mode:\n%s", out)
	}
	if out := mustExit(t, 3, "bind", addr); !strings.Contains(out, "no-IOMMU") || !strings.Contains(out, "--noiommu") {
		t.Errorf("bind without --noiommu: %s", out)
	}
	if _, err := pci.Bind(addr, pci.BindOptions{}); !errors.Is(err, pci.ErrNoIOMMU) {
		t.Errorf("pci.Bind without NoIOMMU = %v, want ErrNoIOMMU", err)
	}
	mustExit(t, 0, "bind", addr, "--noiommu")
	d, err := pci.Get(addr)
	if err != nil {
		t.Fatal(err)
	}
	if !d.NoIOMMU || !strings.HasPrefix(d.VFIOGroup, "/dev/vfio/noiommu-") {
		t.Errorf("bound device %+v: want a no-IOMMU group node", d)
	}
	if out := mustExit(t, 0, "list"); !strings.Contains(out, "noiommu-") {
		t.Errorf("list does not mark the no-IOMMU group:\n%s", out)
	}
	_, err = vfio.Open(addr, nil)
	expect(t, "open without Options.NoIOMMU", err, vfioerr.ErrNotSupported, "no IOMMU", "Options.NoIOMMU")

	for _, m := range []mode{
		{"vfio_noiommu", vfio.Legacy, 0},
		{"iommufd_compat_noiommu", vfio.IOMMUFDCompat, 0},
		{"group_iommufd_noiommu", vfio.GroupIOMMUFD, 0},
		{"iommufd_cdev_noiommu", vfio.Cdev, 0},
	} {
		t.Run(m.name, func(t *testing.T) {
			h, err := vfio.Open(addr, &vfio.Options{Backend: m.backend, NoIOMMU: true})
			if v := sinceLinux[m.backend]; v != "" && errors.Is(err, vfioerr.ErrNotSupported) && strings.Contains(err.Error(), "Linux "+v) {
				t.Skipf("%s: this kernel lacks the backend: %v", m.name, err) // Linux 6.1: no iommufd
			}
			if m.backend == vfio.Cdev && errors.Is(err, vfioerr.ErrNotSupported) {
				// Linux 6.12 makes no cdev for a no-IOMMU device: said so.
				expect(t, "cdev of a no-IOMMU device", err, vfioerr.ErrNotSupported, "no-IOMMU", "no cdev")
				t.Logf("%s: %v", m.name, err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			if !h.NoIOMMU() || h.Mapper() != nil {
				t.Fatalf("handle NoIOMMU=%v Mapper=%v: want no Mapper in no-IOMMU mode", h.NoIOMMU(), h.Mapper())
			}
			if h.Container() != nil && h.Container().IOMMU() != vfio.NoIOMMU {
				t.Errorf("container model %v, want noiommu", h.Container().IOMMU())
			}
			// Handed over, it stays a no-IOMMU handle with no Mapper.
			pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			a, _ := net.FileConn(os.NewFile(uintptr(pair[0]), "a"))
			b, _ := net.FileConn(os.NewFile(uintptr(pair[1]), "b"))
			defer a.Close()
			defer b.Close()
			if err := h.Send(a.(*net.UnixConn)); err != nil {
				t.Fatal(err)
			}
			r, err := vfio.Receive(b.(*net.UnixConn))
			if err != nil {
				t.Fatal(err)
			}
			if !r.NoIOMMU() || r.Mapper() != nil {
				t.Errorf("received handle NoIOMMU=%v Mapper=%v, want a no-IOMMU handle with no Mapper", r.NoIOMMU(), r.Mapper())
			}
			r.Close()
			e, err := edu.Open(h.Device())
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			buf, err := dma.CreateBuffer(8192)
			if err != nil {
				t.Fatal(err)
			}
			defer buf.Close()
			src, dst := buf.Bytes()[:1000], buf.Bytes()[4096:5096]
			for i := range src {
				src[i], dst[i] = byte(i*13+1), 0
			}
			srcPA, err := buf.PhysAddr(0)
			if err != nil {
				t.Fatal(err)
			}
			dstPA, err := buf.PhysAddr(4096)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.DMA(srcPA, edu.Buffer, uint64(len(src)), 0); err != nil {
				t.Fatal(err)
			}
			if err := e.DMA(edu.Buffer, dstPA, uint64(len(dst)), edu.CmdToRAM); err != nil {
				t.Fatal(err)
			}
			for i := range dst {
				if dst[i] != src[i] {
					t.Fatalf("byte %d came back as %#x through physical %#x, sent %#x from %#x", i, dst[i], dstPA, src[i], srcPA)
				}
			}
			t.Logf("%s: 1000 bytes round-tripped through physical addresses %#x -> edu -> %#x", m.name, srcPA, dstPA)
		})
	}
	if open := kernel.Open(); len(open) > 0 {
		t.Errorf("leaked: %v", open)
	}
	mustExit(t, 0, "unbind", addr)
}
