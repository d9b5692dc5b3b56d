package vfio_test

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"testing"
	"time"

	"github.com/vfioctl/vfioctl/dma"
	"github.com/vfioctl/vfioctl/pci"
	"github.com/vfioctl/vfioctl/vfio"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// TestMain runs the examples only inside the e2e VM (go test ./tests/e2e
// boots it and runs this package there), where the edu device exists.
func TestMain(m *testing.M) {
	if os.Getenv("VFIOCTL_GUEST") == "" {
		fmt.Println("vfio examples drive a real device: they run in the e2e VM (go test ./tests/e2e); the host runs the Tests")
		flag.Set("test.run", "^Test")
	}
	os.Exit(m.Run())
}

// The whole flow of a userspace driver: bind the device to vfio-pci, open
// it, give it memory at an IOVA the IOMMU allows, program it through BAR0
// and wait for its MSI. (QEMU's edu device: DMA 64 bytes from RAM into it.)
func Example() {
	const addr = "0000:00:03.0"
	if _, err := pci.Bind(addr, pci.BindOptions{}); err != nil && !errors.Is(err, pci.ErrAlreadyBound) {
		log.Fatal(err)
	}
	h, err := vfio.Open(addr, nil) // cdev+iommufd, else group+iommufd, else legacy
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()

	buf, err := dma.CreateBuffer(4096)
	if err != nil {
		log.Fatal(err)
	}
	defer buf.Close()
	alloc, err := dma.NewAllocatorFor(h.Mapper())
	if err != nil {
		log.Fatal(err)
	}
	iova, err := alloc.Reserve(uint64(buf.Len()))
	if err != nil {
		log.Fatal(err)
	}
	if err := h.Mapper().Map(iova, buf.Bytes(), dma.ReadWrite); err != nil {
		log.Fatal(err)
	}
	defer h.Mapper().Unmap(iova, uint64(buf.Len()))

	cfg, err := h.Device().Config()
	if err != nil {
		log.Fatal(err)
	}
	if err := cfg.EnableBusMaster(); err != nil {
		log.Fatal(err)
	}
	bar0, err := h.Device().Region(vfio.BAR0Region)
	if err != nil {
		log.Fatal(err)
	}
	mmio, err := bar0.Map()
	if err != nil {
		log.Fatal(err)
	}
	defer mmio.Close()

	msi, err := vfio.CreateEventfd()
	if err != nil {
		log.Fatal(err)
	}
	defer msi.Close()
	msiFD, err := msi.FD()
	if err != nil {
		log.Fatal(err)
	}
	if err := h.Device().SetTriggers(vfio.MSIIRQ, 0, []int{msiFD}); err != nil {
		log.Fatal(err)
	}
	mmio.Store64(0x80, iova)    // DMA source: our buffer
	mmio.Store64(0x88, 0x40000) // destination: edu's internal buffer
	mmio.Store64(0x90, 64)      // bytes
	mmio.Store64(0x98, 1|4)     // start, raise an interrupt when done
	if n, err := msi.Wait(5 * time.Second); err != nil || n == 0 {
		log.Fatalf("no interrupt: %v", err)
	}
	fmt.Println("DMA done; interrupt received")
	// Output: DMA done; interrupt received
}

// On POWER, a dynamic DMA window beside the default 32-bit one: 1 GiB of
// 64 KiB TCEs, placed by the kernel (at 2^59 on a pSeries guest), and a
// registered buffer mapped at its start. (Compiled, not run: it needs a
// POWER machine.)
func ExampleSPAPR_CreateWindow() {
	h, err := vfio.Open("0001:00:01.0", &vfio.Options{Backend: vfio.Legacy, IOMMU: vfio.SPAPRTCEv2})
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	s, err := h.Container().SPAPR() // the POWER-only calls
	if err != nil {
		log.Fatal(err)
	}
	info, err := s.Info()
	if err != nil {
		log.Fatal(err)
	}
	if info.DDW == nil || info.DDW.PageSizes&(64<<10) == 0 {
		log.Fatal("no dynamic windows of 64 KiB pages here")
	}
	w, err := s.CreateWindow(16, 1<<30, 1)
	if err != nil {
		log.Fatal(err)
	}
	buf, err := dma.CreateBuffer(64 << 10)
	if err != nil {
		log.Fatal(err)
	}
	defer buf.Close()
	// h.Mapper registers the pages it maps (a SPAPRMapper).
	if err := h.Mapper().Map(w.Start, buf.Bytes(), dma.ReadWrite); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("window %v, buffer at %#x\n", w.Range, w.Start)
}

// A vGPU's console: the primary plane of a mediated device's display and,
// for dma-buf displays, the buffer a compositor imports. (Compiled, not
// run: it needs a device with a display, such as the mbochs sample.)
func ExampleDevice_Plane() {
	h, err := vfio.Open("8df7c7c8-835b-4422-93fb-bfc6d8e30f10", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	d := h.Device()
	kind, err := d.Display()
	if err != nil {
		log.Fatal(err) // vfioerr.ErrNotSupported: no display
	}
	p, err := d.Plane(kind, vfio.PlanePrimary)
	if err != nil || p.Empty() {
		log.Fatal("nothing to show yet: ", err)
	}
	fmt.Println(p) // primary XR24 640x480 stride 2560, 1228800 bytes in dma-buf 1
	if kind == vfio.DisplayDMABuf {
		f, err := d.PlaneDMABuf(p)
		if err != nil {
			log.Fatal(err)
		}
		defer f.Close()
	}
}

// An idle device put in D3hot until it is needed again, woken by the
// kernel (and told through the eventfd) if something touches it first.
// (Compiled, not run: it needs a device with the PCI power-management
// capability on a kernel with runtime PM.)
func ExampleDevice_EnterLowPower() {
	h, err := vfio.Open("0000:01:00.0", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	wake, err := vfio.CreateEventfd()
	if err != nil {
		log.Fatal(err)
	}
	defer wake.Close()
	state, err := h.Device().EnterLowPower(wake)
	if errors.Is(err, vfioerr.ErrNotSupported) {
		log.Fatal("low power would change nothing here: ", err)
	}
	fmt.Println("now in", state) // D3hot
	if n, _ := wake.Wait(time.Second); n > 0 {
		fmt.Println("woken: back in D0")
	}
	if err := h.Device().ExitLowPower(); err != nil {
		log.Fatal(err)
	}
}
