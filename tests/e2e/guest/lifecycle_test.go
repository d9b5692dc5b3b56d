package guest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vfioctl/vfioctl/dma"
	"github.com/vfioctl/vfioctl/edu"
	"github.com/vfioctl/vfioctl/pci"
	"github.com/vfioctl/vfioctl/vfio"
)

// removeDevice writes 1 to the device's sysfs remove file in the
// background; the channel reports when the write returns.
func removeDevice(addr string) <-chan error {
	done := make(chan error, 1)
	go func() { done <- os.WriteFile("/sys/bus/pci/devices/"+addr+"/remove", []byte("1"), 0) }()
	return done
}

// rescanAndBind brings a removed device back and binds it to vfio-pci.
func rescanAndBind(t *testing.T, addr string) {
	t.Helper()
	if err := os.WriteFile("/sys/bus/pci/rescan", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat("/sys/bus/pci/devices/" + addr); err == nil {
			break
		} else if time.Now().After(end) {
			t.Fatalf("%s did not come back after rescan", addr)
		}
	}
	if _, err := pci.Bind(addr, pci.BindOptions{}); err != nil {
		t.Fatal(err)
	}
}

// eduWorks opens addr in mode m and round-trips a DMA.
func eduWorks(t *testing.T, addr string, m mode) {
	t.Helper()
	h, err := vfio.Open(addr, &vfio.Options{Backend: m.backend, IOMMU: m.iommu})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	e, err := edu.Open(h.Device())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	alloc, _ := dma.NewAllocatorFor(h.Mapper())
	alloc.Limit(edu.DMAMask)
	buf, _ := dma.CreateBuffer(8192)
	defer buf.Close()
	iova, _ := alloc.Reserve(8192)
	if err := h.Mapper().Map(iova, buf.Bytes(), dma.ReadWrite); err != nil {
		t.Fatal(err)
	}
	defer h.Mapper().Unmap(iova, 8192)
	if err := e.Roundtrip(buf, iova, 1000); err != nil {
		t.Fatal(err)
	}
}

// TestSurpriseRemoval removes the second edu from sysfs while it is open.
// A holder that watches the request interrupt closes on the first request
// and the removal completes at once; a holder with none blocks the removal
// (the kernel logs that it waits) until it closes; removing a device no one
// holds completes at once. After each, a rescan brings the device back and
// it works.
func TestSurpriseRemoval(t *testing.T) {
	addr := eduAddrs(t)[1]
	for _, m := range []mode{modes[1], modes[5]} { // type1v2 container, cdev
		t.Run(m.name+"/with-handler", func(t *testing.T) {
			requireBackend(t, m.backend)
			h, err := vfio.Open(addr, &vfio.Options{Backend: m.backend, IOMMU: m.iommu})
			if err != nil {
				t.Fatal(err)
			}
			var once sync.Once
			requested := make(chan time.Time, 1)
			stop, err := h.Device().WatchRequests(func() {
				once.Do(func() { requested <- time.Now(); h.Close() })
			})
			if err != nil {
				t.Fatal(err)
			}
			defer stop()
			start := time.Now()
			removed := removeDevice(addr)
			select {
			case err := <-removed:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("removal did not complete in 10 s with a handler that closes")
			}
			took := time.Since(start)
			select {
			case at := <-requested:
				t.Logf("request after %s, removal complete after %s", at.Sub(start).Round(time.Millisecond), took.Round(time.Millisecond))
			default:
				t.Fatal("the removal completed but the handler never ran")
			}
			if took > 3*time.Second {
				t.Errorf("removal took %s with a handler that closes at once", took)
			}
			rescanAndBind(t, addr)
			eduWorks(t, addr, m)
		})
		t.Run(m.name+"/no-handler", func(t *testing.T) {
			requireBackend(t, m.backend)
			log := openKmsg(t)
			h, err := vfio.Open(addr, &vfio.Options{Backend: m.backend, IOMMU: m.iommu})
			if err != nil {
				t.Fatal(err)
			}
			removed := removeDevice(addr)
			select {
			case err := <-removed:
				h.Close()
				t.Fatalf("removal returned (%v) while the device was held with no handler", err)
			case <-time.After(2 * time.Second):
			}
			if !log.waitLog("blocked until released by user", time.Second) {
				t.Error("the kernel did not log that the removal waits for the user")
			}
			closed := time.Now()
			h.Close()
			select {
			case err := <-removed:
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("held 2 s with no handler; removal complete %s after Close", time.Since(closed).Round(time.Millisecond))
			case <-time.After(15 * time.Second):
				t.Fatal("removal did not complete after the holder closed")
			}
			rescanAndBind(t, addr)
			eduWorks(t, addr, m)
		})
	}
	t.Run("not-held", func(t *testing.T) {
		start := time.Now()
		if err := <-removeDevice(addr); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("removing a device no one holds took %s", d)
		}
		rescanAndBind(t, addr)
		eduWorks(t, addr, modes[1])
	})
}

// waitLog reports whether a kernel message containing s arrives within wait.
func (k *kmsg) waitLog(s string, wait time.Duration) bool {
	for end := time.Now().Add(wait); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		for _, l := range k.lines() {
			if strings.Contains(l, s) {
				return true
			}
		}
	}
	return false
}

// pinnedPages is how many pages are pinned for DMA system-wide (FOLL_PIN:
// what type1 and iommufd pin), from /proc/vmstat.
func pinnedPages(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/vmstat")
	if err != nil {
		t.Fatal(err)
	}
	var acq, rel int64 = -1, -1
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) != 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "nr_foll_pin_acquired":
			acq = v
		case "nr_foll_pin_released":
			rel = v
		}
	}
	if acq < 0 || rel < 0 {
		t.Fatal("/proc/vmstat lacks nr_foll_pin_acquired/released")
	}
	return acq - rel
}

// pinsBackTo waits up to limit for the pinned-page count to come back to
// at most want and returns the last count read.
func pinsBackTo(t *testing.T, want int64, limit time.Duration) int64 {
	t.Helper()
	now := pinnedPages(t)
	for end := time.Now().Add(limit); now > want && time.Now().Before(end); now = pinnedPages(t) {
		time.Sleep(200 * time.Millisecond)
	}
	return now
}

// settledPins is pinnedPages once it has stayed the same over four reads
// 200 ms apart; a count still moving after 15 s fails the test (a value
// taken mid-release would hide a leak or invent one).
func settledPins(t *testing.T) int64 {
	t.Helper()
	var seen []int64
	prev, same := pinnedPages(t), 0
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); {
		time.Sleep(200 * time.Millisecond)
		now := pinnedPages(t)
		if seen = append(seen, now); now != prev {
			prev, same = now, 0
			continue
		}
		if same++; same == 3 {
			return now
		}
	}
	t.Fatalf("the pinned-page count did not settle in 15 s: %v", seen)
	return 0
}

// TestCrashedHolder: in every mode a child opens edu, wires its MSI to an
// eventfd and maps a 256 MiB buffer 4 KiB at a time; it is killed with
// SIGKILL in the middle of mapping. Afterwards the pinned-page count is
// back where it started, and the device opens again and DMAs in that mode
// and the next (nothing holds its group, cdev or iommufd binding).
func TestCrashedHolder(t *testing.T) {
	if arg := os.Getenv("VFIOCTL_CRASH_CHILD"); arg != "" {
		crashChild(arg)
		return
	}
	addr := eduAddr(t)
	forModes(t, func(t *testing.T, m mode) {
		before := settledPins(t)
		exe, _ := os.Executable()
		cmd := exec.Command(exe, "-test.run=^TestCrashedHolder$")
		cmd.Env = append(os.Environ(), "VFIOCTL_CRASH_CHILD="+m.name)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		started := false
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "mapping") {
				started = true
				break
			}
		}
		if !started {
			cmd.Wait()
			t.Fatalf("the child never started mapping: %s", stderr.String())
		}
		time.Sleep(150 * time.Millisecond)
		during := pinnedPages(t)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if during-before < 256 { // at least 1 MiB pinned when it died
			t.Errorf("only %d pages pinned while the child was mapping", during-before)
		}
		// Every page the child pinned is released: the count comes back
		// to where it was, to the page (one interrupted 4 KiB map left
		// pinned is a leak). Seen: type1 releases the last few pages of an
		// interrupted map seconds after the child is reaped, so the count
		// gets 15 s to come back.
		after := pinsBackTo(t, before, 15*time.Second)
		if after > before {
			t.Errorf("pinned pages: %d before, %d while mapping, %d still 15 s after the kill: %d of the child's pins outlived it", before, during, after, after-before)
		}
		t.Logf("pinned pages %d before, %d mid-map, %d after SIGKILL", before, during, after)
		// Nothing of the dead child's holds the device: it opens and DMAs
		// in the mode it died in and in the next one (so every mode is
		// tried after some crash).
		all := supportedModes(t)
		for i, again := range all {
			if again == m {
				eduWorks(t, addr, again)
				eduWorks(t, addr, all[(i+1)%len(all)])
			}
		}
	})
}

func crashChild(modeName string) {
	var m mode
	for _, c := range modes {
		if c.name == modeName {
			m = c
		}
	}
	fail := func(err error) { fmt.Fprintln(os.Stderr, err); os.Exit(1) }
	h, err := vfio.Open(eduAddrNoTest(), &vfio.Options{Backend: m.backend, IOMMU: m.iommu})
	if err != nil {
		fail(err)
	}
	ev, err := vfio.CreateEventfd()
	if err != nil {
		fail(err)
	}
	if err := h.Device().SetEventfds(vfio.MSIIRQ, 0, ev); err != nil {
		fail(err)
	}
	buf, err := dma.CreateBuffer(256 << 20)
	if err != nil {
		fail(err)
	}
	mem := buf.Bytes()
	for off := 0; off < len(mem); off += 4096 {
		if err := h.Mapper().Map(uint64(0x1000000+off), mem[off:off+4096], dma.ReadWrite); err != nil {
			fail(err)
		}
		if off == 0 {
			fmt.Println("mapping")
		}
	}
	fmt.Println("mapped everything before the kill")
	time.Sleep(time.Hour)
}

// eduAddrNoTest finds the first edu (already bound by the parent).
func eduAddrNoTest() string {
	devs, _ := pci.List()
	for _, d := range devs {
		if d.Vendor == edu.Vendor && d.Device == edu.Device {
			return d.Address
		}
	}
	return ""
}
