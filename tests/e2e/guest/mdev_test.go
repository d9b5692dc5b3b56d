package guest

import (
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/mdev"
	"github.com/vfioctl/vfioctl/pci"
	"github.com/vfioctl/vfioctl/vfio"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// mtty's UART registers in BAR0 (a 16550's).
const (
	uartData = 0 // THR on write, RBR on read
	uartLSR  = 5
	lsrDR    = 0x01 // data ready
	lsrTHRE  = 0x20 // transmit holding register empty
)

// TestMdev (every kernel built with the mtty sample) makes a mediated
// device, opens it by its UUID through every backend the boot offers (and
// is refused by those it lacks), drives its emulated UART through BAR0,
// refuses to remove it while held, and removes it.
func TestMdev(t *testing.T) {
	needMdev(t, "mtty")
	ps, err := mdev.Parents()
	if err != nil {
		t.Fatal(err)
	}
	var avail2 = -1
	for _, p := range ps {
		for _, ty := range p.Types {
			if p.Name == "mtty" && ty.ID == "mtty-2" && ty.DeviceAPI == "vfio-pci" {
				avail2 = ty.Available
			}
		}
	}
	if avail2 < 1 {
		t.Fatalf("parents %+v: want mtty offering mtty-2 (vfio-pci) with instances available", ps)
	}
	uuid, err := mdev.RandomUUID()
	if err != nil {
		t.Fatal(err)
	}
	d, err := mdev.Create("mtty", "mtty-2", uuid)
	if err != nil {
		t.Fatal(err)
	}
	removed := false
	defer func() {
		if !removed {
			mdev.Remove(uuid)
		}
	}()
	if d.Parent != "mtty" || d.Type != "mtty-2" || d.Group < 0 || d.VFIOGroup == "" || strings.Contains(d.VFIOGroup, "noiommu") {
		t.Errorf("created %+v: want an mtty-2 of parent mtty with a group node (not a no-IOMMU one)", d)
	}
	if (d.VFIOCdev != "") != offered(t, vfio.Cdev) {
		t.Errorf("created %+v: a cdev %q, where the boot's manifest says cdev offered: %v", d, d.VFIOCdev, offered(t, vfio.Cdev))
	}
	if ps, _ := mdev.Parents(); availableOf(ps, "mtty-2") != avail2-1 {
		t.Errorf("mtty-2 instances available after a create: %d, want %d", availableOf(ps, "mtty-2"), avail2-1)
	}
	_, err = mdev.Create("mtty", "mtty-2", uuid)
	expect(t, "the same UUID twice", err, unix.EEXIST, "exists")
	_, err = mdev.Create("mtty", "mtty-2", "not-a-uuid")
	expect(t, "a malformed UUID", err, unix.EINVAL, "UUID")
	_, err = mdev.Create("mtty", "mtty-9", "")
	expect(t, "an unknown type", err, unix.ENOENT, "no such parent or type")

	for _, m := range mdevModes {
		t.Run(m.name, func(t *testing.T) {
			h, err := vfio.Open(uuid, &vfio.Options{Backend: m.backend})
			if !offered(t, m.backend) {
				if err == nil {
					h.Close()
				}
				expect(t, "an mdev through "+m.backend.String()+", which the boot lacks", err, vfioerr.ErrNotSupported)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			if h.NoIOMMU() || h.Mapper() == nil || h.Device().Name() != uuid {
				t.Errorf("handle: noiommu %v, mapper %v, name %q: want an mdev handle with a Mapper", h.NoIOMMU(), h.Mapper(), h.Device().Name())
			}
			if m.backend == vfio.Cdev && (h.DevID() == 0 || h.IOAS() == nil) {
				t.Errorf("cdev: devid %d, IOAS %v", h.DevID(), h.IOAS())
			}
			info := h.Device().Info()
			if !info.PCI() || info.NumRegions == 0 {
				t.Fatalf("device info %+v: want a vfio-pci device API", info)
			}
			bar, err := h.Device().Region(vfio.BAR0Region)
			if err != nil {
				t.Fatal(err)
			}
			if bar.Size != 8 || !bar.Readable() || !bar.Writable() {
				t.Fatalf("BAR0 %+v: want the 8 bytes of a 16550", bar)
			}
			reg := func(off int64) byte {
				b := make([]byte, 1)
				if _, err := bar.ReadAt(b, off); err != nil {
					t.Fatal(err)
				}
				return b[0]
			}
			if lsr := reg(uartLSR); lsr&lsrDR != 0 || lsr&lsrTHRE == 0 {
				t.Errorf("LSR %#x before a write: want no data ready, the transmitter empty", lsr)
			}
			sent := []byte(m.name[:3])
			for _, c := range sent {
				if _, err := bar.WriteAt([]byte{c}, uartData); err != nil {
					t.Fatal(err)
				}
			}
			if lsr := reg(uartLSR); lsr&lsrDR == 0 {
				t.Errorf("LSR %#x after writing %q: want data ready", lsr, sent)
			}
			var got []byte
			for range sent {
				got = append(got, reg(uartData))
			}
			if string(got) != string(sent) {
				t.Errorf("read back %q, sent %q", got, sent)
			}
			if lsr := reg(uartLSR); lsr&lsrDR != 0 {
				t.Errorf("LSR %#x after reading everything: want no data ready", lsr)
			}
			// Held: remove refuses, naming this process, instead of
			// blocking until it closes the device.
			var busy *pci.BusyError
			if err := mdev.Remove(uuid); !errors.As(err, &busy) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
				t.Errorf("remove while open: %v, want a BusyError naming pid %d", err, os.Getpid())
			}
		})
	}

	var listed []mdev.Device
	if err := json.Unmarshal([]byte(mustExit(t, 0, "mdev", "list", "--json")), &listed); err != nil || len(listed) != 1 || listed[0].UUID != uuid {
		t.Errorf("vfioctl mdev list --json: %+v, %v; want the one mdev", listed, err)
	}
	if !strings.Contains(mustExit(t, 0, "mdev", "types"), "mtty-2") {
		t.Error("vfioctl mdev types does not list mtty-2")
	}
	if err := mdev.Remove(uuid); err != nil {
		t.Fatal(err)
	}
	removed = true
	_, err = mdev.Get(uuid)
	expect(t, "the removed mdev", err, unix.ENODEV, "no such mediated device")
	// The CLI's own create and remove.
	made := strings.TrimSpace(mustExit(t, 0, "mdev", "create", "mtty", "mtty-1"))
	mustExit(t, 0, "mdev", "remove", made)
	if _, err := mdev.Get(made); err == nil {
		t.Errorf("vfioctl mdev remove left %s", made)
	}
}

func availableOf(ps []mdev.Parent, typ string) int {
	for _, p := range ps {
		for _, t := range p.Types {
			if t.ID == typ {
				return t.Available
			}
		}
	}
	return -1
}
