package guest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vfioctl/vfioctl/dma"
	"github.com/vfioctl/vfioctl/edu"
	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/pci"
	"github.com/vfioctl/vfioctl/vfio"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// eduAddrs binds every edu to vfio-pci and returns their addresses, in
// order: the profiles carry two, each in its own IOMMU group.
func eduAddrs(t testing.TB) []string {
	t.Helper()
	var out []string
	ents, err := os.ReadDir("/sys/bus/pci/devices")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		d := filepath.Join("/sys/bus/pci/devices", e.Name())
		if sysfsRead(t, d+"/vendor")+":"+sysfsRead(t, d+"/device") != wantDevices["edu"] {
			continue
		}
		if sysfsDriver(e.Name()) != pci.VFIODriver {
			if _, err := pci.Bind(e.Name(), pci.BindOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, e.Name())
	}
	if len(out) < 2 {
		t.Fatalf("want two edu devices in the guest, found %v", out)
	}
	return out
}

// TestTwoDevicesOneAddressSpace opens the second edu into the first one's
// address space (Options.Join) in every mode: one Map serves both, both
// DMA into the same buffer, after Unmap neither reaches it, and closing
// the first Handle leaves the second working.
func TestTwoDevicesOneAddressSpace(t *testing.T) {
	addrs := eduAddrs(t)
	forModes(t, func(t *testing.T, m mode) {
		if Profile == "pseries" {
			spaprJoinRefused(t, addrs, m)
			return
		}
		h1, err := vfio.Open(addrs[0], &vfio.Options{Backend: m.backend, IOMMU: m.iommu})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h1.Close() }) // on failure; the test closes it itself (a second Close is ErrClosed)
		h2, err := vfio.Open(addrs[1], &vfio.Options{Join: h1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h2.Close() })
		if h2.Mapper() != h1.Mapper() || h2.Backend() != h1.Backend() {
			t.Errorf("joined handle has mapper %p backend %v, want %p %v", h2.Mapper(), h2.Backend(), h1.Mapper(), h1.Backend())
		}
		if h1.Group() != nil && h1.Group().ID() == h2.Group().ID() {
			t.Errorf("both edus report group %d; the profile puts them in separate groups", h1.Group().ID())
		}
		if h1.Backend() == vfio.Cdev && h1.DevID() == h2.DevID() {
			t.Errorf("both devices got iommufd device id %d", h1.DevID())
		}
		// A BAR mapping keeps the device open past its fd's Close: unmap
		// on failure too (a second Close is harmless).
		e1, err := edu.Open(h1.Device())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e1.Close() })
		e2, err := edu.Open(h2.Device())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e2.Close() })
		alloc, err := dma.NewAllocatorFor(h1.Mapper())
		if err != nil {
			t.Fatal(err)
		}
		alloc.Limit(edu.DMAMask)
		buf, err := dma.CreateBuffer(8192)
		if err != nil {
			t.Fatal(err)
		}
		defer buf.Close()
		iova, err := alloc.Reserve(8192)
		if err != nil {
			t.Fatal(err)
		}
		if err := h1.Mapper().Map(iova, buf.Bytes(), dma.ReadWrite); err != nil { // the one Map
			t.Fatal(err)
		}
		for i, e := range []*edu.Edu{e1, e2} {
			if err := e.Roundtrip(buf, iova, 1500); err != nil {
				t.Fatalf("edu %s through the shared mapping: %v", addrs[i], err)
			}
		}
		if err := h2.Mapper().Unmap(iova, 8192); err != nil { // unmapped through the other handle
			t.Fatal(err)
		}
		page := buf.Bytes()[4096 : 4096+64]
		for i, e := range []*edu.Edu{e1, e2} {
			for j := range page {
				page[j] = 0x5a
			}
			if err := e.DMA(edu.Buffer, iova+4096, 64, edu.CmdToRAM); err != nil {
				t.Fatal(err)
			}
			for j := range page {
				if page[j] != 0x5a {
					t.Fatalf("edu %s wrote byte %d through the unmapped IOVA %#x", addrs[i], j, iova+4096)
				}
			}
		}
		e1.Close()
		// The first handle goes; the space stays while the second uses it.
		if err := h1.Close(); err != nil {
			t.Fatal(err)
		}
		if err := h2.Mapper().Map(iova, buf.Bytes(), dma.ReadWrite); err != nil {
			t.Fatalf("map after the first handle closed: %v", err)
		}
		if err := e2.Roundtrip(buf, iova, 1000); err != nil {
			t.Fatalf("second device after the first handle closed: %v", err)
		}
		e2.Close()
		if err := h2.Close(); err != nil {
			t.Fatal(err)
		}
		if err := h2.Mapper().Map(iova, buf.Bytes(), dma.ReadWrite); err == nil {
			t.Error("map after both handles closed succeeded")
		}
		if open := kernel.Open(); len(open) > 0 {
			t.Errorf("leaked: %v", open)
		}
	})
}

// TestJoinRefusals: joining a closed handle, or asking for another backend
// than the joined one, is refused without touching the device.
func TestJoinRefusals(t *testing.T) {
	addrs := eduAddrs(t)
	h1, err := vfio.Open(addrs[0], &vfio.Options{Backend: vfio.Legacy})
	if err != nil {
		t.Fatal(err)
	}
	_, err = vfio.Open(addrs[1], &vfio.Options{Join: h1, Backend: vfio.Cdev})
	expect(t, "join with another backend", err, nil, "legacy")
	h1.Close()
	_, err = vfio.Open(addrs[1], &vfio.Options{Join: h1})
	expect(t, "join a closed handle", err, vfioerr.ErrClosed)
	if open := kernel.Open(); len(open) > 0 {
		t.Errorf("leaked: %v", open)
	}
}

// TestOutsideVMM runs examples/vmm, a program in its own module that
// imports only the public packages, against both edus: two devices in one
// IOAS, guest RAM from a memfd, MSI on eventfds, errors matched.
func TestOutsideVMM(t *testing.T) {
	if _, err := os.Stat("/bin/vmm"); err != nil {
		t.Fatalf("examples/vmm is missing (%v): every boot that runs this test builds it into /bin/vmm", err)
	}
	addrs := eduAddrs(t)
	out, err := exec.Command("/bin/vmm", addrs[0], addrs[1]).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "all checks passed") {
		t.Fatalf("vmm %s %s: %v\n%s", addrs[0], addrs[1], err, out)
	}
	t.Logf("%s", out)
}
