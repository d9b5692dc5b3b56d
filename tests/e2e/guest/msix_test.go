package guest

import (
	"testing"
	"time"

	"github.com/vfioctl/vfioctl/pci"
	"github.com/vfioctl/vfioctl/vfio"
)

// bindE1000e binds the NIC to vfio-pci (forced: the guest does not use
// eth0) until the test ends, when e1000e gets it back.
func bindE1000e(t *testing.T) string {
	t.Helper()
	addr := findDevice(t, wantDevices["e1000e"])
	if _, err := pci.Bind(addr, pci.BindOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := pci.Restore(addr); err != nil {
			t.Errorf("restore e1000e: %v", err)
		}
	})
	return addr
}

// TestE1000eMSIX uses the e1000e, which edu cannot stand in for: its MSI-X
// table BAR and vector count, as VFIO reports them, must match its MSI-X
// capability in config space; an MSI-X vector fires its eventfd.
func TestE1000eMSIX(t *testing.T) {
	addr := bindE1000e(t)
	h, err := vfio.Open(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	cfg, err := h.Device().Config()
	if err != nil {
		t.Fatal(err)
	}
	caps, err := cfg.Capabilities()
	if err != nil {
		t.Fatal(err)
	}
	var tableBIR uint32
	var vectors uint32
	for _, c := range caps {
		if c.ID == vfio.PCICapIDMSIX {
			ctl, _ := cfg.Read16(int64(c.Offset) + 2)
			table, _ := cfg.Read32(int64(c.Offset) + 4)
			vectors, tableBIR = uint32(ctl&0x7ff)+1, table&7
		}
	}
	if vectors == 0 {
		t.Fatalf("no MSI-X capability in e1000e config space: %v", caps)
	}
	irq, err := h.Device().IRQInfo(vfio.MSIXIRQ)
	if err != nil {
		t.Fatal(err)
	}
	if irq.Count != vectors {
		t.Errorf("VFIO reports %d MSI-X vectors, the capability %d", irq.Count, vectors)
	}
	bar, err := h.Device().Region(vfio.RegionIndex(tableBIR))
	if err != nil {
		t.Fatal(err)
	}
	if !bar.MSIXMappable {
		t.Errorf("BAR%d holds the MSI-X table but lacks VFIO_REGION_INFO_CAP_MSIX_MAPPABLE: caps %+v", tableBIR, bar.Caps)
	}
	ev, err := vfio.CreateEventfd()
	if err != nil {
		t.Fatal(err)
	}
	defer ev.Close()
	fds := make([]int, vectors)
	for i := range fds {
		fds[i] = -1
	}
	fds[vectors-1] = fdOf(t, ev)
	if err := h.Device().SetTriggers(vfio.MSIXIRQ, 0, fds); err != nil {
		t.Fatal(err)
	}
	if err := h.Device().TriggerIRQ(vfio.MSIXIRQ, vectors-1, 1); err != nil {
		t.Fatal(err)
	}
	if n, _ := ev.Wait(2 * time.Second); n == 0 {
		t.Fatalf("MSI-X vector %d did not fire its eventfd", vectors-1)
	}
	if err := h.Device().DisableIRQ(vfio.MSIXIRQ); err != nil {
		t.Fatal(err)
	}
	t.Logf("e1000e: %d MSI-X vectors, table in BAR%d (%#x bytes, msix-mappable)", vectors, tableBIR, bar.Size)

	// The device raises one itself: its Interrupt Cause Set register sets
	// the RxQ0 cause, which IVAR routes to vector 0; vector 1 stays quiet.
	const (
		ics, ims, imc, ivar = 0xc8, 0xd0, 0xd8, 0xe4
		rxq0                = 1 << 20 // E1000_ICR_RXQ0
		ivarRxQ0Vector0     = 0x8     // RxQ0 entry: vector 0, valid
	)
	_, regs := mapBAR0(t, h, 4096) // bus mastering on: an MSI-X message is a write
	regs.Store32(imc, ^uint32(0))
	evs := make([]*vfio.Eventfd, 2)
	for i := range evs {
		if evs[i], err = vfio.CreateEventfd(); err != nil {
			t.Fatal(err)
		}
		defer evs[i].Close()
	}
	if err := h.Device().SetEventfds(vfio.MSIXIRQ, 0, evs...); err != nil {
		t.Fatal(err)
	}
	defer h.Device().DisableIRQ(vfio.MSIXIRQ)
	regs.Store32(ivar, ivarRxQ0Vector0)
	regs.Store32(ims, rxq0)
	if n, _ := evs[0].Wait(100 * time.Millisecond); n != 0 {
		t.Fatalf("vector 0 fired before the device was told to raise it")
	}
	regs.Store32(ics, rxq0)
	if n, err := evs[0].Wait(2 * time.Second); n == 0 {
		t.Fatalf("the e1000e set its RxQ0 cause (ICS), routed to MSI-X vector 0, but vector 0's eventfd did not fire (%v)", err)
	}
	if n, _ := evs[1].Wait(100 * time.Millisecond); n != 0 {
		t.Errorf("vector 1 fired, though IVAR routes nothing to it")
	}
	regs.Store32(imc, ^uint32(0))
	t.Log("e1000e raised MSI-X vector 0 itself (ICS RxQ0, IVAR to vector 0)")
}
