package guest

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/edu"
	"github.com/vfioctl/vfioctl/internal/sysfs"
	"github.com/vfioctl/vfioctl/vfio"
)

// TestPreopenedFDs builds the whole legacy path from raw descriptors, as a
// VMM does with fds handed over by a privileged helper.
func TestPreopenedFDs(t *testing.T) {
	addr := eduAddr(t)
	n, _ := sysfs.DeviceGroup(addr)
	cfd, err := unix.Open("/dev/vfio/vfio", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	c, err := vfio.NewContainer(cfd, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	gfd, err := unix.Open(vfio.GroupPath(n), unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	g, err := vfio.NewGroup(gfd, n)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.SetContainer(c); err != nil {
		t.Fatal(err)
	}
	defer g.UnsetContainer()
	if err := c.SetIOMMU(0); err != nil {
		t.Fatal(err)
	}
	if c.IOMMU() != vfio.Type1v2 {
		t.Errorf("SetIOMMU(0) chose %v, want type1v2", c.IOMMU())
	}
	d, err := g.Device(addr)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := d.FD()
	dup, err := unix.Dup(raw)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	d2, err := vfio.NewDevice(dup, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if d2.Info().NumRegions != 9 {
		t.Errorf("device from a pre-opened fd: %+v", d2.Info())
	}
	if _, err := vfio.NewContainer(-1, 0); err == nil {
		t.Error("NewContainer(-1) succeeded")
	}
}

// TestIRQMaskAndTrigger: a software trigger fires the eventfd with no help
// from the device; a masked INTx is held back until unmasked.
func TestIRQMaskAndTrigger(t *testing.T) {
	e := openEdu(t, modes[1]) // the type1v2 container: every kernel has it
	dev := e.Handle.Device()
	ev, err := vfio.CreateEventfd()
	if err != nil {
		t.Fatal(err)
	}
	defer ev.Close()
	if err := dev.SetEventfds(vfio.MSIIRQ, 0, ev); err != nil {
		t.Fatal(err)
	}
	if err := dev.TriggerIRQ(vfio.MSIIRQ, 0, 1); err != nil {
		t.Fatal(err)
	}
	if n, _ := ev.Wait(2 * time.Second); n == 0 {
		t.Fatal("software MSI trigger did not fire the eventfd")
	}
	if err := dev.DisableIRQ(vfio.MSIIRQ); err != nil {
		t.Fatal(err)
	}
	if err := dev.SetEventfds(vfio.IntxIRQ, 0, ev); err != nil {
		t.Fatal(err)
	}
	if err := dev.MaskIRQ(vfio.IntxIRQ, 0, 1); err != nil {
		t.Fatal(err)
	}
	e.Store32(edu.RegIRQRaise, 1)
	if n, _ := ev.Wait(500 * time.Millisecond); n != 0 {
		t.Fatal("a masked INTx reached the eventfd")
	}
	if err := dev.UnmaskIRQ(vfio.IntxIRQ, 0, 1); err != nil {
		t.Fatal(err)
	}
	if n, _ := ev.Wait(2 * time.Second); n == 0 {
		t.Fatal("the pending INTx was not delivered on unmask")
	}
	e.Store32(edu.RegIRQAck, 1)
	if err := dev.DisableIRQ(vfio.IntxIRQ); err != nil {
		t.Fatal(err)
	}
}
