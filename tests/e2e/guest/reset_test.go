package guest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/dma"
	"github.com/vfioctl/vfioctl/pci"
	"github.com/vfioctl/vfioctl/vfio"
)

// NVMe controller registers (NVMe 1.4, section 3.1).
const (
	nvmeCAP  = 0x00
	nvmeCC   = 0x14
	nvmeCSTS = 0x1c
	nvmeAQA  = 0x24
	nvmeASQ  = 0x28
	nvmeACQ  = 0x30
	// CC: enable, 64-byte submission and 16-byte completion entries.
	nvmeCCEnable = 1 | 6<<16 | 4<<20
)

// vfioDevice binds addr to vfio-pci for the test and gives it back to its
// driver afterwards.
func vfioDevice(t *testing.T, addr string) {
	t.Helper()
	d, err := pci.Get(addr)
	if err != nil {
		t.Fatal(err)
	}
	if d.Driver == pci.VFIODriver {
		return
	}
	settle(t, addr)
	if _, err := pci.Bind(addr, pci.BindOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		var err error
		if d.Driver == "" {
			_, err = pci.Unbind(addr)
		} else {
			_, err = pci.Restore(addr)
		}
		if err != nil {
			t.Errorf("give %s back: %v", addr, err)
		}
		settle(t, addr)
	})
}

// settle waits until the kernel's nvme driver has finished with a
// controller it probes: its probe returns at once and resets the
// controller in a work item, and a reset that fails there releases the
// driver from the device later. Taking the device meanwhile lets that late
// release unbind vfio-pci under the next test (seen on Linux 6.1 under
// virtio-iommu: the next open's group had no device).
func settle(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if sysfsDriver(addr) != "nvme" {
			return
		}
		states, _ := filepath.Glob("/sys/bus/pci/devices/" + addr + "/nvme/nvme*/state")
		state := ""
		if len(states) == 1 {
			b, _ := os.ReadFile(states[0])
			state = strings.TrimSpace(string(b))
		}
		if state == "live" { // a dead controller is released by the driver: wait for that
			return
		}
		if time.Now().After(deadline) {
			t.Logf("%s: the nvme driver still has the controller in state %q after 30 s", addr, state)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mapBAR0 turns on memory decoding and bus mastering for h's device and
// maps the first size bytes of its BAR0, unmapped when the test ends.
func mapBAR0(t *testing.T, h *vfio.Handle, size uint64) (*vfio.Config, *vfio.MMIO) {
	t.Helper()
	cfg, err := h.Device().Config()
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.EnableBusMaster(); err != nil {
		t.Fatal(err)
	}
	bar, err := h.Device().Region(vfio.BAR0Region)
	if err != nil {
		t.Fatal(err)
	}
	regs, err := bar.MapRange(0, size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { regs.Close() })
	return cfg, regs
}

// nvmeEnable points the admin queues at iova and sets CC.EN, waiting for
// CSTS.RDY as long as CAP.TO allows.
func nvmeEnable(t *testing.T, regs *vfio.MMIO, iova uint64) {
	t.Helper()
	regs.Store32(nvmeAQA, 1<<16|1) // two entries each (0-based)
	regs.Store32(nvmeASQ, uint32(iova))
	regs.Store32(nvmeASQ+4, uint32(iova>>32))
	regs.Store32(nvmeACQ, uint32(iova+4096))
	regs.Store32(nvmeACQ+4, uint32((iova+4096)>>32))
	regs.Store32(nvmeCC, nvmeCCEnable)
	timeout := time.Duration(regs.Load64(nvmeCAP)>>24&0xff) * 500 * time.Millisecond
	for end := time.Now().Add(timeout + time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if regs.Load32(nvmeCSTS)&1 == 1 {
			return
		}
	}
	t.Fatalf("CSTS.RDY did not come up within CAP.TO (%s); CSTS %#x", timeout, regs.Load32(nvmeCSTS))
}

// onRootBus reports whether a PCI device sits on a root bus (its parent in
// sysfs is the host bridge, pciDDDD:BB) rather than behind a bridge.
func onRootBus(t *testing.T, addr string) bool {
	t.Helper()
	real, err := filepath.EvalSymlinks("/sys/bus/pci/devices/" + addr)
	if err != nil {
		t.Fatal(err)
	}
	return strings.HasPrefix(filepath.Base(filepath.Dir(real)), "pci")
}

// TestHotResetNVMe: nvme sits alone behind a PCIe root port, so a secondary
// bus reset exists and affects only it. In every mode: the controller is
// enabled (CC.EN=1, CSTS.RDY=1, admin queues set), Handle.HotReset resets
// the bus, and CC and CSTS are back at their reset values (0); enabling
// the controller again works.
func TestHotResetNVMe(t *testing.T) {
	addr := findDevice(t, wantDevices["nvme"])
	if onRootBus(t, addr) {
		// hack/qemu keeps nvme on the root bus under amd-iommu (behind a
		// root port its probe never finishes there): it has no bus to reset.
		if Profile != "amd" {
			t.Fatalf("nvme %s is on the root bus; hack/qemu puts it behind a root port except under amd-iommu", addr)
		}
		t.Skipf("nvme %s sits on the root bus (amd-iommu, QEMU 7.2): no secondary bus to reset", addr)
	}
	vfioDevice(t, addr)
	forModes(t, func(t *testing.T, m mode) {
		h, err := vfio.Open(addr, &vfio.Options{Backend: m.backend, IOMMU: m.iommu})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		deps, err := h.Device().HotResetInfo()
		if err != nil {
			t.Fatal(err)
		}
		if len(deps) != 1 || deps[0].Address() != addr {
			t.Fatalf("hot reset info %+v, want only %s (alone behind its root port)", deps, addr)
		}
		cfg, regs := mapBAR0(t, h, 4096)
		alloc, err := dma.NewAllocatorFor(h.Mapper())
		if err != nil {
			t.Fatal(err)
		}
		queues, err := dma.CreateBuffer(8192)
		if err != nil {
			t.Fatal(err)
		}
		defer queues.Close()
		iova, _ := alloc.Reserve(8192)
		if err := h.Mapper().Map(iova, queues.Bytes(), dma.ReadWrite); err != nil {
			t.Fatal(err)
		}
		defer h.Mapper().Unmap(iova, 8192)

		nvmeEnable(t, regs, iova)
		before := [3]uint32{regs.Load32(nvmeCC), regs.Load32(nvmeCSTS), regs.Load32(nvmeAQA)}
		start := time.Now()
		if err := h.HotReset(); err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		after := [3]uint32{regs.Load32(nvmeCC), regs.Load32(nvmeCSTS), regs.Load32(nvmeAQA)}
		if before[0]&1 != 1 || before[1]&1 != 1 {
			t.Fatalf("before the reset CC %#x CSTS %#x: the controller was not enabled", before[0], before[1])
		}
		// QEMU's nvme keeps AQA across a reset; CC and CSTS are the proof.
		if after[0] != 0 || after[1] != 0 {
			t.Fatalf("after the hot reset CC %#x CSTS %#x, want 0 and 0 (reset values)", after[0], after[1])
		}
		if err := cfg.EnableBusMaster(); err != nil { // config space is restored; set it again regardless
			t.Fatal(err)
		}
		nvmeEnable(t, regs, iova) // the device works after the reset
		regs.Store32(nvmeCC, 0)
		t.Logf("%s: CC %#x CSTS %#x AQA %#x before, %#x %#x %#x after a %s hot reset; enabled again",
			m.name, before[0], before[1], before[2], after[0], after[1], after[2], took.Round(time.Millisecond))
	})
	if out := mustExit(t, 0, "reset", "--hot", addr); !strings.Contains(out, "hot reset via") || !strings.Contains(out, addr) {
		t.Errorf("vfioctl reset --hot %s: %s", addr, out)
	}
}

// TestHotResetSharedBus: the two test devices behind the PCIe-to-PCI
// bridge share a bus and an IOMMU group, so resetting one resets both. On
// the cdev path with only one bound, the kernel counts the other as owned
// through the group (device id 0, VFIO_PCI_DEVID_OWNED) and the reset goes
// through; on the group path the group fd is the proof, and a reset without
// it is refused. A device on the root bus has no bus to reset, and says so.
func TestHotResetSharedBus(t *testing.T) {
	var pair []string
	devs, err := pci.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range devs {
		if d.Vendor == 0x1b36 && d.Device == 0x0005 { // pci-testdev
			pair = append(pair, d.Address)
		}
	}
	if len(pair) != 2 {
		t.Fatalf("want two pci-testdevs behind the bridge, found %v", pair)
	}
	if g0, g1 := bootGroups[pair[0]], bootGroups[pair[1]]; g0 < 0 || g1 < 0 {
		// Measured: QEMU 7.2's virtio-iommu leaves the devices behind the
		// PCIe-to-PCI bridge untranslated, so they get no IOMMU group and
		// vfio-pci refuses them.
		if Profile != "virtio" {
			t.Fatalf("the pci-testdevs behind the bridge have no IOMMU group (%d, %d) under %s, which gives them one", g0, g1, Profile)
		}
		t.Skipf("the pci-testdevs behind the bridge have no IOMMU group under virtio-iommu (QEMU 7.2): vfio-pci cannot take them")
	}
	for _, a := range pair {
		vfioDevice(t, a)
	}
	g0, _ := pci.Get(pair[0])
	g1, _ := pci.Get(pair[1])
	if g0.IOMMUGroup != g1.IOMMUGroup {
		t.Errorf("devices behind one PCIe-to-PCI bridge in groups %d and %d, want one", g0.IOMMUGroup, g1.IOMMUGroup)
	}

	t.Run("cdev", func(t *testing.T) {
		requireBackend(t, vfio.Cdev)
		hotResetSharedBusCdev(t, pair)
	})
	t.Run("group", func(t *testing.T) { hotResetSharedBusGroup(t, pair) })
}

func hotResetSharedBusCdev(t *testing.T, pair []string) {
	h, err := vfio.Open(pair[0], &vfio.Options{Backend: vfio.Cdev})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	deps, err := h.Device().HotResetInfo()
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]uint32{}
	for _, d := range deps {
		ids[d.Address()] = d.DevID
	}
	if len(deps) != 2 || ids[pair[0]] != h.DevID() || ids[pair[1]] != 0 || !deps[0].DevIDSet {
		t.Errorf("cdev hot reset info %+v: want %s as device id %d and %s owned through the group (0)", deps, pair[0], h.DevID(), pair[1])
	}
	// The second device joins the iommufd, so its state can be set and
	// read (both stay open: closing the last device of a bus lets
	// vfio-pci reset the bus itself, which would hide whether ours did).
	h2, err := vfio.Open(pair[1], &vfio.Options{Join: h})
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	observeBusReset(t, h.HotReset, h.Device(), h2.Device())
}

func hotResetSharedBusGroup(t *testing.T, pair []string) {
	g, err := vfio.Open(pair[0], &vfio.Options{Backend: vfio.Legacy})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	g2, err := vfio.Open(pair[1], &vfio.Options{Join: g})
	if err != nil {
		t.Fatal(err)
	}
	defer g2.Close()
	armTestdev(t, g.Device())
	expect(t, "group-path hot reset without the group fd", g.Device().HotReset(), unix.EINVAL, "VFIO_DEVICE_PCI_HOT_RESET")
	if got := testdevState(t, g.Device()); got == 0 {
		t.Errorf("the refused hot reset reset %s all the same", pair[0])
	}
	observeBusReset(t, g.HotReset, g.Device(), g2.Device())

	edu := eduAddr(t)
	e, err := vfio.Open(edu, &vfio.Options{Backend: vfio.Legacy})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	expect(t, "hot reset on the root bus", e.HotReset(), unix.ENODEV, "no bus or slot reset")
}

// armTestdev gives a pci-testdev state that only a reset clears: it
// selects test 0 (a write of 0 to BAR0's test register), after which BAR0
// reads back that test's header, its name from byte 16 on; after a reset
// (QEMU's pci_testdev_reset) nothing is selected and every byte reads 0.
// The PCI command register would not show a bus reset: the kernel saves
// and restores config space around it.
func armTestdev(t *testing.T, d *vfio.Device) {
	t.Helper()
	bar, err := d.Region(vfio.BAR0Region)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bar.WriteAt([]byte{0}, 0); err != nil {
		t.Fatal(err)
	}
	if testdevState(t, d) == 0 {
		t.Fatalf("%s: BAR0 reads 0 after selecting test 0: the test header is not there", d.Name())
	}
}

// testdevState is a pci-testdev's BAR0 bytes 16-19 (the selected test's
// name), 0 when no test is selected.
func testdevState(t *testing.T, d *vfio.Device) uint32 {
	t.Helper()
	bar, err := d.Region(vfio.BAR0Region)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	for i := range b { // the device answers one byte at a time
		if _, err := bar.ReadAt(b[i:i+1], int64(16+i)); err != nil {
			t.Fatal(err)
		}
	}
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// observeBusReset arms both devices of the bus, resets through reset, and
// requires both to have lost their state: the reset reached the whole bus.
func observeBusReset(t *testing.T, reset func() error, devs ...*vfio.Device) {
	t.Helper()
	for _, d := range devs {
		armTestdev(t, d)
	}
	if err := reset(); err != nil {
		t.Fatalf("hot reset of the shared bus: %v", err)
	}
	for _, d := range devs {
		if got := testdevState(t, d); got != 0 {
			t.Errorf("%s after the hot reset of its bus: BAR0 still reads %#x, the selected test's name; want 0 (reset)", d.Name(), got)
		}
	}
}

// TestHotResetE1000e: the e1000e sits alone behind its root port under
// every vIOMMU (amd included). A receive descriptor base written through
// BAR0 reads back, and after Handle.HotReset it is at its reset value, 0.
func TestHotResetE1000e(t *testing.T) {
	const rdbal = 0x2800 // Receive Descriptor Base Address Low
	addr := findDevice(t, wantDevices["e1000e"])
	d, err := pci.Get(addr)
	if err != nil {
		t.Fatal(err)
	}
	if d.Driver != pci.VFIODriver {
		if _, err := pci.Bind(addr, pci.BindOptions{Force: true}); err != nil { // eth0 is not used here
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if _, err := pci.Restore(addr); err != nil {
				t.Errorf("restore %s: %v", addr, err)
			}
		})
	}
	forModes(t, func(t *testing.T, m mode) {
		h, err := vfio.Open(addr, &vfio.Options{Backend: m.backend, IOMMU: m.iommu})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		_, regs := mapBAR0(t, h, 0x4000)
		regs.Store32(rdbal, 0x12345000)
		before := regs.Load32(rdbal)
		if before != 0x12345000 {
			t.Fatalf("RDBAL reads %#x after writing 0x12345000", before)
		}
		if err := h.HotReset(); err != nil {
			t.Fatal(err)
		}
		if after := regs.Load32(rdbal); after != 0 {
			t.Fatalf("RDBAL %#x after the hot reset, want 0 (its reset value)", after)
		}
		t.Logf("%s: RDBAL %#x before, 0 after the hot reset", m.name, before)
	})
}
