package guest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/hack/qemu"
	"github.com/vfioctl/vfioctl/vfio"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// TestLowPower: with runtime PM, the e1000e (it has the PCI power
// management capability) goes to D3hot and back in every mode, and wakes
// itself, signalling the eventfd, on a config access; edu (no such
// capability) and kernels without runtime PM are refused as having no
// effect instead of answered with a success that changes nothing.
func TestLowPower(t *testing.T) {
	if os.Getenv(qemu.RuntimePMEnv) != "1" {
		h, err := vfio.Open(eduAddr(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		_, err = h.Device().EnterLowPower(nil)
		expect(t, "low power on a kernel without runtime PM", err, vfioerr.ErrNotSupported, "CONFIG_PM")
		if s, err := h.Device().PowerState(); err != nil || s != vfio.D0 {
			t.Errorf("edu after the refused entry: %q, %v; want D0", s, err)
		}
		return
	}
	t.Run("edu", func(t *testing.T) {
		h, err := vfio.Open(eduAddr(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		_, err = h.Device().EnterLowPower(nil)
		expect(t, "low power on edu", err, vfioerr.ErrNotSupported, "no PCI power management capability")
		if st := sysfsRead(t, "/sys/bus/pci/devices/"+h.Device().Name()+"/power/runtime_status"); st != "active" {
			t.Errorf("edu after the refused entry is %s, want active (taken out of low power again)", st)
		}
	})
	if Profile == "pseries" || Profile == "smmuv3" {
		// The other architectures' machines carry only the edus: edu's
		// refusal above is what runtime PM can show there.
		t.Logf("%s: runtime PM on, edu refused (no PM capability); this machine has no e1000e", Profile)
		return
	}
	addr := bindE1000e(t)
	for _, m := range mdevModes {
		t.Run(m.name, func(t *testing.T) {
			requireBackend(t, m.backend)
			lowPowerE1000e(t, addr, m.backend)
		})
	}
}

func lowPowerE1000e(t *testing.T, addr string, b vfio.Backend) {
	h, err := vfio.Open(addr, &vfio.Options{Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	d := h.Device()
	cfg, err := d.Config()
	if err != nil {
		t.Fatal(err)
	}
	caps, err := cfg.Capabilities()
	if err != nil {
		t.Fatal(err)
	}
	pm := -1
	for _, c := range caps {
		if c.ID == vfio.PCICapIDPowerManage {
			pm = int(c.Offset)
		}
	}
	if pm < 0 {
		t.Fatalf("e1000e has no power management capability: %v", caps)
	}
	// PMCSR and the runtime status, read through sysfs: neither wakes a
	// device in D3hot (an access through VFIO would).
	dev := filepath.Join("/sys/bus/pci/devices", addr)
	state := func() string {
		t.Helper()
		f, err := os.Open(filepath.Join(dev, "config"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b := make([]byte, 2)
		if _, err := f.ReadAt(b, int64(pm+4)); err != nil {
			t.Fatal(err)
		}
		s, err := d.PowerState()
		if err != nil {
			t.Fatal(err)
		}
		return string(s) + fmt.Sprintf(" pmcsr=%#04x ", binary.LittleEndian.Uint16(b)) + sysfsRead(t, filepath.Join(dev, "power", "runtime_status"))
	}
	const on, off = "D0 pmcsr=0x0000 active", "D3hot pmcsr=0x0003 suspended"
	awaitState := func(what, want string) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for s := state(); s != want; s = state() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s, want %s", what, s, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	awaitState("before", on)

	s, err := d.EnterLowPower(nil)
	if err != nil || s != vfio.D3hot {
		t.Fatalf("LOW_POWER_ENTRY: %q, %v", s, err)
	}
	awaitState("in low power", off)
	if _, err := d.EnterLowPower(nil); !errors.Is(err, unix.EINVAL) {
		t.Errorf("a second entry: %v, want EINVAL", err)
	}
	// Without a wakeup eventfd an access wakes the device for its
	// duration only.
	if v, err := cfg.Read16(0); err != nil || v != 0x8086 {
		t.Errorf("vendor ID read through VFIO in low power: %#x, %v", v, err)
	}
	awaitState("after an access without a wakeup eventfd", off)
	if err := d.ExitLowPower(); err != nil {
		t.Fatal(err)
	}
	awaitState("after LOW_POWER_EXIT", on)

	wake, err := vfio.CreateEventfd()
	if err != nil {
		t.Fatal(err)
	}
	defer wake.Close()
	if s, err := d.EnterLowPower(wake); err != nil || s != vfio.D3hot {
		t.Fatalf("LOW_POWER_ENTRY_WITH_WAKEUP: %q, %v", s, err)
	}
	awaitState("in low power with a wakeup eventfd", off)
	if n, err := wake.Wait(50 * time.Millisecond); n != 0 || err != nil {
		t.Errorf("the wakeup eventfd fired before anything woke the device: %d, %v", n, err)
	}
	if _, err := cfg.Read16(0); err != nil {
		t.Fatal(err)
	}
	if n, err := wake.Wait(2 * time.Second); n == 0 || err != nil {
		t.Fatalf("a config access woke the device but its eventfd did not fire: %d, %v", n, err)
	}
	time.Sleep(100 * time.Millisecond) // the kernel left low power itself: no suspend follows
	awaitState("after the wakeup", on)
	if err := d.ExitLowPower(); err != nil {
		t.Errorf("LOW_POWER_EXIT after a wakeup: %v, want no effect", err)
	}
	t.Logf("%s: e1000e %s -> entry: %s -> exit: %s; with wakeup: the eventfd fired on a config read, back to D0", b, on, off, on)
}
