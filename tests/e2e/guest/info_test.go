package guest

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/vfioctl/vfioctl/uapi"
	"github.com/vfioctl/vfioctl/vfio"
)

// sysfsBARSizes reads BAR sizes from sysfs "resource" (start end flags per line).
func sysfsBARSizes(t *testing.T, addr string) []uint64 {
	t.Helper()
	f, err := os.Open("/sys/bus/pci/devices/" + addr + "/resource")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			t.Fatalf("resource line %q", sc.Text())
		}
		start, err1 := strconv.ParseUint(f[0], 0, 64)
		end, err2 := strconv.ParseUint(f[1], 0, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("resource line %q", sc.Text())
		}
		size := uint64(0)
		if end > start {
			size = end - start + 1
		}
		out = append(out, size)
	}
	return out
}

// TestEduInfo compares what the Go API reports with independent readings:
// sysfs resource sizes and config space, and the MSI capability.
func TestEduInfo(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		e := openEdu(t, m)
		addr := e.Handle.Device().Name()
		info := e.Handle.Device().Info()
		if !info.PCI() || info.NumRegions != 9 || info.NumIRQs != 5 {
			t.Fatalf("device info %+v: want a PCI device with 9 regions and 5 IRQ indexes", info)
		}
		sizes := sysfsBARSizes(t, addr)
		for i := vfio.BAR0Region; i <= vfio.ROMRegion; i++ {
			r, err := e.Handle.Device().Region(i)
			if err != nil {
				t.Fatalf("region %d: %v", i, err)
			}
			if r.Size != sizes[i] {
				t.Errorf("region %d size %#x, sysfs resource says %#x", i, r.Size, sizes[i])
			}
		}
		bar0, _ := e.Handle.Device().Region(vfio.BAR0Region)
		if !bar0.Mappable() || !bar0.Readable() || !bar0.Writable() {
			t.Errorf("BAR0 flags %#x: want read, write, mmap", bar0.Flags)
		}
		cfgFile, err := os.ReadFile("/sys/bus/pci/devices/" + addr + "/config")
		if err != nil {
			t.Fatal(err)
		}
		cfgRegion, err := e.Handle.Device().Region(vfio.ConfigRegion)
		if err != nil {
			t.Fatal(err)
		}
		if cfgRegion.Size != uint64(len(cfgFile)) {
			t.Errorf("config region %d bytes, sysfs config %d", cfgRegion.Size, len(cfgFile))
		}
		cfg, _ := e.Handle.Device().Config()
		id, _ := cfg.Read32(0)
		if want := uint32(cfgFile[0]) | uint32(cfgFile[1])<<8 | uint32(cfgFile[2])<<16 | uint32(cfgFile[3])<<24; id != want {
			t.Errorf("vendor/device via VFIO %#x, via sysfs %#x", id, want)
		}
		if _, err := e.Handle.Device().Region(vfio.VGARegion); err == nil {
			t.Errorf("edu has no VGA region, but Region(VGA) succeeded")
		}

		// IRQs: INTx exists iff the interrupt pin is set; MSI vectors from
		// the MSI capability's Multiple Message Capable field.
		intx, err := e.Handle.Device().IRQInfo(vfio.IntxIRQ)
		if err != nil {
			t.Fatal(err)
		}
		if pin := cfgFile[0x3d]; (intx.Count == 1) != (pin != 0) {
			t.Errorf("INTx count %d, interrupt pin %d", intx.Count, pin)
		}
		caps, err := cfg.Capabilities()
		if err != nil {
			t.Fatal(err)
		}
		var msiVectors uint32
		for _, c := range caps {
			if c.ID == vfio.PCICapIDMSI {
				ctl, _ := cfg.Read16(int64(c.Offset) + 2)
				msiVectors = 1 << ((ctl >> 1) & 7)
			}
		}
		msi, err := e.Handle.Device().IRQInfo(vfio.MSIIRQ)
		if err != nil {
			t.Fatal(err)
		}
		if msi.Count != msiVectors || !msi.Eventfd() {
			t.Errorf("MSI info %+v, capability says %d vectors", msi, msiVectors)
		}
		msix, _ := e.Handle.Device().IRQInfo(vfio.MSIXIRQ)
		if msix.Count != 0 {
			t.Errorf("MSI-X count %d, edu has no MSI-X capability", msix.Count)
		}
		if get, set, err := e.Handle.Device().FeatureProbe(uapi.VFIO_DEVICE_FEATURE_MIGRATION); err != nil || get || set {
			t.Errorf("edu migration feature: get=%v set=%v err=%v, want unsupported", get, set, err)
		}
		if get, set, err := e.Handle.Device().FeatureProbe(uapi.VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY); err != nil || get || !set {
			t.Errorf("vfio-pci low power entry: get=%v set=%v err=%v, want set only", get, set, err)
		}
		methods, _ := os.ReadFile("/sys/bus/pci/devices/" + addr + "/reset_method")
		hasReset := strings.TrimSpace(string(methods)) != ""
		if info.Resettable() != hasReset {
			t.Errorf("VFIO says resettable=%v, sysfs reset_method=%q", info.Resettable(), methods)
		}
		err = e.Handle.Device().Reset()
		if hasReset && err != nil {
			t.Errorf("Reset: %v", err)
		}
		if !hasReset {
			expect(t, "Reset without a reset method", err, nil, "no reset method")
		}
		if err := cfg.EnableBusMaster(); err != nil { // a reset clears the command register
			t.Fatal(err)
		}
		t.Logf("regions %v, INTx %d, MSI %d, caps %v", sizes[:2], intx.Count, msi.Count, caps)
	})
}
