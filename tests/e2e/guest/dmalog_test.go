package guest

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/vfio"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// TestDMALogging: vfio-pci's edu and e1000e do not log their DMA
// (ErrNotSupported); mtty, from 6.7, takes the log's ranges, checks them
// as the kernel's core does and reports a bitmap (its driver is a stub
// that never marks a page).
func TestDMALogging(t *testing.T) {
	oneMiB := vfio.DMARange{IOVA: 0, Length: 1 << 20}
	// The error names Linux 6.2 only where the kernel predates the feature.
	absent := func(what string, err error) {
		t.Helper()
		expect(t, what, err, vfioerr.ErrNotSupported, "does not log its DMA")
		if old := linuxVersion(t) < linux(6, 2, 0); err != nil && old != strings.Contains(err.Error(), "needs Linux 6.2") {
			t.Errorf("%s on Linux %d: %v (says the version added the feature: %v, want %v)", what, linuxVersion(t), err, !old, old)
		}
	}
	t.Run("edu", func(t *testing.T) {
		h, err := vfio.Open(eduAddr(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		_, err = h.Device().StartDMALogging(4096, oneMiB)
		absent("DMA logging on edu", err)
	})
	t.Run("e1000e", func(t *testing.T) {
		h, err := vfio.Open(bindE1000e(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		_, err = h.Device().StartDMALogging(4096, oneMiB)
		absent("DMA logging on e1000e", err)
	})
	t.Run("mtty", func(t *testing.T) {
		needMdev(t, "mtty")
		h, err := vfio.Open(createMdev(t, "mtty", "mtty-1"), &vfio.Options{Backend: vfio.Legacy})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		d := h.Device()
		if linuxVersion(t) < linux(6, 7, 0) {
			_, err := d.StartDMALogging(4096, oneMiB)
			absent("DMA logging on mtty before 6.7", err)
			return
		}
		if _, err := d.StartDMALogging(4096, vfio.DMARange{IOVA: 0x800, Length: 4096}); !errors.Is(err, unix.EINVAL) {
			t.Errorf("a range not aligned to the page: %v, want EINVAL", err)
		}
		if _, err := d.StartDMALogging(4096, oneMiB, vfio.DMARange{IOVA: 0x80000, Length: 1 << 20}); !errors.Is(err, unix.EINVAL) {
			t.Errorf("overlapping ranges: %v, want EINVAL", err)
		}
		if _, err := d.StartDMALogging(4096); !errors.Is(err, unix.EINVAL) {
			t.Errorf("no range: %v, want EINVAL", err)
		}
		log, err := d.StartDMALogging(4096, oneMiB, vfio.DMARange{IOVA: 1 << 30, Length: 2 << 20})
		if err != nil {
			t.Fatal(err)
		}
		if log.PageSize() != 4096 {
			t.Errorf("mtty logs at %#x-byte pages, asked 4 KiB", log.PageSize())
		}
		bitmap := make([]uint64, log.BitmapWords(1<<20))
		if len(bitmap) != 4 {
			t.Errorf("1 MiB at 4 KiB pages: %d bitmap words, want 4", len(bitmap))
		}
		bitmap[3] = 1 << 63 // the report adds bits: what is set stays set
		if err := log.Report(0, 1<<20, bitmap); err != nil {
			t.Fatal(err)
		}
		if bitmap[0]|bitmap[1]|bitmap[2] != 0 || bitmap[3] != 1<<63 {
			t.Errorf("mtty's report: %#x, want nothing added (its driver marks no page)", bitmap)
		}
		if err := log.Report(0, 1<<20, bitmap[:2]); !errors.Is(err, unix.EINVAL) {
			t.Errorf("a bitmap too short: %v, want EINVAL", err)
		}
		if err := log.Report(^uint64(0)-4095, 8192, bitmap); !errors.Is(err, unix.EOVERFLOW) {
			t.Errorf("a range that wraps: %v, want EOVERFLOW", err)
		}
		if err := log.Stop(); err != nil {
			t.Fatal(err)
		}
	})
}
