// Command vmm is what a Go VMM does with vfioctl, written as an outsider
// would: its own module, importing only the public packages. It opens two
// devices into one I/O address space, maps 64 MiB of guest RAM from a memfd
// at guest-physical addresses, wires each device's MSI to an eventfd, has
// each device DMA through the shared mapping, and matches the library's
// errors with errors.Is and errors.As.
//
//	vmm 0000:00:03.0 0000:00:06.0
//
// The devices are QEMU edu devices bound to vfio-pci (vfioctl bind); it
// exits non-zero, saying why, on the first thing that does not work.
package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/dma"
	"github.com/vfioctl/vfioctl/vfio"
	"github.com/vfioctl/vfioctl/vfioerr"
)

const (
	ramSize = 64 << 20 // guest RAM, at guest-physical (= IO virtual) address 0
	ramBase = 0x100000 // skip the first MiB, as a PC's low memory would

	// edu's registers (QEMU's teaching device, 1234:11e8).
	eduID, eduIDValue          = 0x00, 0x010000ed
	eduIRQStatus, eduIRQAck    = 0x24, 0x64
	eduSrc, eduDst, eduCount   = 0x80, 0x88, 0x90
	eduCmd, eduBuffer          = 0x98, 0x40000
	eduRun, eduToRAM, eduIRQOn = 1, 2, 4
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: vmm PCI-ADDRESS PCI-ADDRESS")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "vmm:", err)
		os.Exit(1)
	}
	fmt.Println("vmm: all checks passed")
}

func run(addr1, addr2 string) error {
	first, err := vfio.Open(addr1, nil) // the best backend the kernel offers
	if err != nil {
		return err
	}
	defer first.Close()
	second, err := vfio.Open(addr2, &vfio.Options{Join: first}) // the same address space
	if err != nil {
		return err
	}
	defer second.Close()
	fmt.Printf("opened %s and %s via %s, one address space\n", addr1, addr2, first.Backend())

	// Guest RAM from a memfd, as a VMM backs RAM it may share or migrate.
	memfd, err := unix.MemfdCreate("guest-ram", unix.MFD_CLOEXEC)
	if err != nil {
		return err
	}
	defer unix.Close(memfd)
	if err := unix.Ftruncate(memfd, ramSize); err != nil {
		return err
	}
	ram, err := unix.Mmap(memfd, 0, ramSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return err
	}
	defer unix.Munmap(ram)
	if err := first.Mapper().Map(ramBase, ram, dma.ReadWrite); err != nil {
		return err
	}
	fmt.Printf("mapped %d MiB of guest RAM at IOVA %#x\n", ramSize>>20, ramBase)

	// Errors callers branch on.
	err = second.Mapper().Map(ramBase, ram[:4096], dma.ReadWrite)
	var op *vfioerr.OpError
	if !errors.Is(err, unix.EEXIST) || !errors.As(err, &op) {
		return fmt.Errorf("an overlapping map gave %v, want EEXIST in a *vfioerr.OpError", err)
	}
	fmt.Printf("overlapping map refused: %s on %s\n", op.Op, op.Object)
	if _, err := vfio.Open("0000:ff:1f.7", nil); err == nil {
		return errors.New("opening a device that does not exist succeeded")
	}

	for i, h := range []*vfio.Handle{first, second} {
		if err := exercise(h, ram, uint64(i+1)); err != nil {
			return fmt.Errorf("%s: %w", h.Device().Name(), err)
		}
	}

	if n, err := first.Mapper().UnmapAll(); err != nil || n != ramSize {
		return fmt.Errorf("UnmapAll = %d, %v; want %d", n, err, ramSize)
	}
	if err := second.Close(); err != nil {
		return err
	}
	if err := second.Close(); !errors.Is(err, vfioerr.ErrClosed) {
		return fmt.Errorf("second Close = %v, want ErrClosed", err)
	}
	return nil
}

// exercise programs one edu: bus mastering, MSI to an eventfd, a DMA from
// guest RAM into the device and back into another page of guest RAM.
func exercise(h *vfio.Handle, ram []byte, seed uint64) error {
	cfg, err := h.Device().Config()
	if err != nil {
		return err
	}
	if err := cfg.EnableBusMaster(); err != nil {
		return err
	}
	bar0, err := h.Device().Region(vfio.BAR0Region)
	if err != nil {
		return err
	}
	regs, err := bar0.Map()
	if err != nil {
		return err
	}
	defer regs.Close()
	if id := regs.Load32(eduID); id != eduIDValue {
		return fmt.Errorf("identification %#x: not an edu", id)
	}
	msi, err := vfio.CreateEventfd()
	if err != nil {
		return err
	}
	defer msi.Close()
	if err := h.Device().SetEventfds(vfio.MSIIRQ, 0, msi); err != nil {
		return err
	}
	defer h.Device().DisableIRQ(vfio.MSIIRQ)

	src := ramBase + seed*0x10000 // guest-physical addresses inside RAM
	dst := src + 0x8000
	in, out := ram[src-ramBase:src-ramBase+1024], ram[dst-ramBase:dst-ramBase+1024]
	for i := range in {
		in[i], out[i] = byte(uint64(i)*seed+7), 0
	}
	for _, step := range []struct{ from, to, cmd uint64 }{
		{src, eduBuffer, 0},
		{eduBuffer, dst, eduToRAM},
	} {
		regs.Store64(eduSrc, step.from)
		regs.Store64(eduDst, step.to)
		regs.Store64(eduCount, uint64(len(in)))
		regs.Store64(eduCmd, step.cmd|eduIRQOn|eduRun)
		if n, err := msi.Wait(5 * time.Second); err != nil || n == 0 {
			return fmt.Errorf("no MSI after a DMA (%v)", err)
		}
		regs.Store32(eduIRQAck, regs.Load32(eduIRQStatus))
	}
	for i := range in {
		if in[i] != out[i] {
			return fmt.Errorf("byte %d came back as %#x, sent %#x", i, out[i], in[i])
		}
	}
	fmt.Printf("%s: DMA through the shared mapping and MSI ok\n", h.Device().Name())
	return nil
}
