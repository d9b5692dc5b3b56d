package guest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vfioctl/vfioctl/internal/allocs"
	"github.com/vfioctl/vfioctl/nvme"
	"github.com/vfioctl/vfioctl/tests/e2e/internal/pattern"
	"github.com/vfioctl/vfioctl/vfio"
)

// openNVMe opens the nvme (behind its root port; on the root bus under
// amd) in mode m and takes it over with the userspace driver.
func openNVMe(t *testing.T, m mode, opts *nvme.Options) (*nvme.Controller, *nvme.Namespace) {
	t.Helper()
	addr := findDevice(t, wantDevices["nvme"])
	vfioDevice(t, addr)
	h, err := vfio.Open(addr, &vfio.Options{Backend: m.backend, IOMMU: m.iommu})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	c, err := nvme.New(h, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("closing the controller: %v", err)
		}
	})
	ns, err := c.Namespace(1)
	if err != nil {
		t.Fatal(err)
	}
	return c, ns
}

// TestNVMeDriver: in every mode, polled and with MSI-X, the userspace
// driver identifies the QEMU controller, writes and reads back transfers
// of one block, two pages, a PRP list and the largest, alternating between
// its two I/O queues, each with data and blocks of its own (the host finds
// them after power-off), flushes, and refuses bad input before the
// controller sees it.
func TestNVMeDriver(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		for i, irq := range []bool{false, true} {
			t.Run(pattern.Completions[i], func(t *testing.T) { nvmeDriver(t, m, irq) })
		}
	})
}

func nvmeDriver(t *testing.T, m mode, irq bool) {
	c, ns := openNVMe(t, m, &nvme.Options{Queues: 2, Interrupts: irq})
	if !c.ShadowDoorbells() {
		t.Errorf("QEMU's nvme offers Doorbell Buffer Config (OACS %#x), but the driver did not turn shadow doorbells on", c.Identify().OACS)
	}
	id := c.Identify()
	if id.Serial != "vfioctl0" || !strings.Contains(id.Model, "QEMU NVMe") || id.Namespaces < 1 {
		t.Errorf("identify: %+v", id)
	}
	if ns.Info.BlockSize != 512 || ns.Info.Bytes() != pattern.ImageSize {
		t.Errorf("namespace 1: %+v, want 512-byte blocks, %d bytes", ns.Info, pattern.ImageSize)
	}
	if largest := pattern.DriverSizes[len(pattern.DriverSizes)-1]; c.MaxTransfer() != largest {
		t.Fatalf("the controller transfers at most %d bytes a command; the slots are laid out for QEMU's %d", c.MaxTransfer(), largest)
	}
	for i, size := range pattern.DriverSizes {
		slot := pattern.Find(t.Name(), fmt.Sprintf("%d bytes", size))
		w, err := c.TakeBuffer(size)
		if err != nil {
			t.Fatal(err)
		}
		r, _ := c.TakeBuffer(size)
		slot.Guest(w.Bytes()[:size], slot.First)
		q := c.Queue(i % 2)
		if err := ns.Write(q, slot.First, w); err != nil {
			t.Fatalf("write %d bytes on queue %d: %v", size, i%2, err)
		}
		if err := ns.Read(q, slot.First, r); err != nil {
			t.Fatalf("read %d bytes on queue %d: %v", size, i%2, err)
		}
		if bad := pattern.Mismatch(r.Bytes()[:size], slot.First, slot.Guest); bad >= 0 {
			t.Errorf("%d bytes on queue %d: block %d read back is not what was written", size, i%2, bad)
		}
		c.ReturnBuffer(w)
		c.ReturnBuffer(r)
	}
	// The I/O path allocates nothing: a read to completion, and a
	// submitted read reaped by Poll.
	hot, _ := c.TakeBuffer(4096)
	q := c.Queue(1)
	if a := allocs.Count(200, func() {
		if err := ns.Read(q, 8, hot); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("200 Reads allocate %d times (irq %v), want 0", a, irq)
	}
	var reaped int
	count := func(uint16, error) { reaped++ }
	if a := allocs.Count(200, func() {
		if _, err := ns.Submit(q, nvme.OpRead, 16, hot); err != nil {
			t.Fatal(err)
		}
		for n := 0; n == 0; {
			var err error
			if n, err = q.Poll(true, count); err != nil {
				t.Fatal(err)
			}
		}
	}); a != 0 || reaped != 201 {
		t.Errorf("200 Submit+Poll reads allocate %d times (irq %v), want 0; %d reaped", a, irq, reaped)
	}
	// The queue kept full through four wraps of its completion queue: the
	// head doorbell lags (the driver announces it every cqDepth-depth
	// completions); were the lag ever too long, the controller would see
	// the completion queue full, stop posting, and the commands would time
	// out.
	start, done, outstanding := time.Now(), 0, 0
	for done < 8*q.Depth() {
		for outstanding < q.Depth() {
			if _, err := ns.Submit(q, nvme.OpRead, uint64(8*(done+outstanding)%4096), hot); err != nil {
				t.Fatalf("after %d completions: %v", done, err)
			}
			outstanding++
		}
		n, err := q.Poll(true, func(_ uint16, err error) {
			if err != nil {
				t.Errorf("a read with the queue full: %v", err)
			}
		})
		if err != nil || time.Since(start) > 20*time.Second {
			t.Fatalf("after %d completions with %d outstanding (%v): %v", done, outstanding, time.Since(start), err)
		}
		done, outstanding = done+n, outstanding-n
	}
	for outstanding > 0 {
		n, err := q.Poll(true, func(uint16, error) {})
		if err != nil {
			t.Fatal(err)
		}
		outstanding -= n
	}
	c.ReturnBuffer(hot)
	if err := ns.Flush(c.Queue(0)); err != nil {
		t.Error(err)
	}
	buf, _ := c.TakeBuffer(4096)
	for _, bad := range []struct {
		what string
		err  error
	}{
		{"past the end", ns.Read(c.Queue(0), ns.Info.Blocks-1, buf)},
		{"the first LBA past the end", ns.Write(c.Queue(0), ns.Info.Blocks, buf)},
		{"an empty buffer", ns.Read(c.Queue(0), 0, nvme.Buffer{})},
	} {
		if !errors.Is(bad.err, nvme.ErrBadRequest) {
			t.Errorf("%s: %v, want ErrBadRequest", bad.what, bad.err)
		}
	}
	if _, err := ns.ReadAt(make([]byte, 100), 0); !errors.Is(err, nvme.ErrBadRequest) {
		t.Errorf("a 100-byte read: %v, want ErrBadRequest", err)
	}
	if _, err := ns.WriteAt(make([]byte, 512), 100); !errors.Is(err, nvme.ErrBadRequest) {
		t.Errorf("a write at byte 100: %v, want ErrBadRequest", err)
	}
	huge, err := c.TakeBuffer(c.MaxTransfer() + 4096)
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Write(c.Queue(0), pattern.ScratchStart, huge); !errors.Is(err, nvme.ErrBadRequest) || !strings.Contains(err.Error(), "more than one command transfers") {
		t.Errorf("a transfer over MDTS: %v, want ErrBadRequest", err)
	}
	c.ReturnBuffer(huge)
	if _, err := c.Namespace(2); err == nil {
		t.Error("namespace 2 of a one-namespace controller opened")
	}
	c.ReturnBuffer(buf)
}

// TestNVMeIntegrity: the host filled the nvme's image with its pattern
// before the boot. In every mode, polled and with MSI-X, on each of two I/O
// queues, the driver reads blocks across the disk (single pages, PRP lists,
// the largest transfer) and finds exactly the host's bytes; it writes its
// own slot's data and reads it back. After shutdown the host test checks
// the image: the slots of the subtests that passed hold their data, and
// every other block outside the scratch area still holds the host's.
func TestNVMeIntegrity(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		for i, irq := range []bool{false, true} {
			t.Run(pattern.Completions[i], func(t *testing.T) {
				c, ns := openNVMe(t, m, &nvme.Options{Queues: 2, Interrupts: irq})
				if ns.Info.Blocks != pattern.Blocks || ns.Info.BlockSize != pattern.BlockSize {
					t.Fatalf("namespace %+v, want %d blocks of %d bytes", ns.Info, pattern.Blocks, pattern.BlockSize)
				}
				for q := 0; q < 2; q++ {
					nvmeIntegrity(t, c, ns, c.Queue(q), pattern.Find(t.Name(), fmt.Sprintf("q%d", q)))
				}
			})
		}
	})
}

func nvmeIntegrity(t *testing.T, c *nvme.Controller, ns *nvme.Namespace, q *nvme.QueuePair, slot pattern.Slot) {
	check := func(lba uint64, buf nvme.Buffer, want func([]byte, uint64), what string) {
		t.Helper()
		if err := ns.Read(q, lba, buf); err != nil {
			t.Fatalf("%s: read %d bytes at block %d: %v", slot.Part, buf.Len(), lba, err)
		}
		if bad := pattern.Mismatch(buf.Bytes(), lba, want); bad >= 0 {
			t.Fatalf("%s: reading %d bytes at block %d: block %d is not %s", slot.Part, buf.Len(), lba, bad, what)
		}
	}
	page, _ := c.TakeBuffer(4096)
	big, err := c.TakeBuffer(c.MaxTransfer())
	if err != nil {
		t.Fatal(err)
	}
	defer c.ReturnBuffer(page)
	defer c.ReturnBuffer(big)
	for i := uint64(0); i < 64; i++ {
		lba := i * (pattern.SlotStart / 64) / 8 * 8
		check(lba+i%8, page, pattern.Host, "the host's") // unaligned to pages on the disk too
	}
	check(pattern.SlotStart-uint64(big.Len()/pattern.BlockSize), big, pattern.Host, "the host's")

	w, _ := c.TakeBuffer(int(slot.Blocks) * pattern.BlockSize)
	defer c.ReturnBuffer(w)
	check(slot.First, w, pattern.Host, "the host's (before this subtest writes)")
	slot.Guest(w.Bytes(), slot.First)
	if err := ns.Write(q, slot.First, w); err != nil {
		t.Fatal(err)
	}
	if err := ns.Flush(q); err != nil {
		t.Fatal(err)
	}
	clear(w.Bytes())
	check(slot.First, w, slot.Guest, "the slot's just written")
}

// TestNVMeFatalAndReset: with bus mastering turned off behind the
// driver's back, QEMU's nvme cannot fetch the command and sets CSTS.CFS.
// The read fails within its timeout with ErrFatal, later commands fail at
// once the same way, and Reset brings the controller back: the same read
// then returns the host's data.
func TestNVMeFatalAndReset(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		if m.name != "vfio_type1v2_iommu" && m.name != "iommufd" {
			t.Skip("two modes suffice: the failure is the device's")
		}
		for _, irq := range []bool{false, true} {
			t.Run(map[bool]string{false: "polled", true: "msix"}[irq], func(t *testing.T) { nvmeFatal(t, m, irq) })
		}
	})
}

func nvmeFatal(t *testing.T, m mode, irq bool) {
	c, ns := openNVMe(t, m, &nvme.Options{Interrupts: irq, Timeout: time.Second})
	buf, _ := c.TakeBuffer(4096)
	h := c.Handle()
	cfg, err := h.Device().Config()
	if err != nil {
		t.Fatal(err)
	}
	cmd, _ := cfg.Command()
	if err := cfg.Write16(vfio.PCICommand, cmd&^vfio.PCICommandMaster); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = ns.Read(c.Queue(0), 0, buf)
	took := time.Since(start)
	if !errors.Is(err, nvme.ErrFatal) || took < time.Second || took > 5*time.Second {
		t.Fatalf("a read with bus mastering off (irq %v): %v after %s; want ErrFatal after the 1 s timeout", irq, err, took)
	}
	if err := ns.Read(c.Queue(0), 0, buf); !errors.Is(err, nvme.ErrFatal) {
		t.Errorf("the next read: %v, want ErrFatal at once", err)
	}
	if err := c.Reset(); err != nil {
		t.Fatalf("reset: %v", err)
	}
	if err := ns.Read(c.Queue(0), 0, buf); err != nil {
		t.Fatalf("a read after Reset: %v", err)
	}
	if bad := pattern.Mismatch(buf.Bytes(), 0, pattern.Host); bad >= 0 {
		t.Errorf("after Reset block %d is not the host's", bad)
	}
	c.ReturnBuffer(buf)
}
