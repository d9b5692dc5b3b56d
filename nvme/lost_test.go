package nvme

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vfioctl/vfioctl/pci"
	"github.com/vfioctl/vfioctl/vfio"
)

// guestNVMe opens the first QEMU nvme (1b36:0010) in the e2e guest, where
// go test ./tests/e2e runs this package as root; on the host it skips.
func guestNVMe(t *testing.T, opts *Options) *Controller {
	t.Helper()
	if os.Getenv("VFIOCTL_GUEST") == "" {
		t.Skip("drives QEMU's nvme: runs in the e2e guest (go test ./tests/e2e)")
	}
	ents, _ := filepath.Glob("/sys/bus/pci/devices/*")
	addr := ""
	for _, e := range ents {
		v, _ := os.ReadFile(e + "/vendor")
		d, _ := os.ReadFile(e + "/device")
		if strings.TrimSpace(string(v)) == "0x1b36" && strings.TrimSpace(string(d)) == "0x0010" {
			addr = filepath.Base(e)
			break
		}
	}
	if addr == "" {
		t.Fatal("no QEMU nvme in the guest")
	}
	if _, err := pci.Bind(addr, pci.BindOptions{}); err != nil && !errors.Is(err, pci.ErrAlreadyBound) {
		t.Fatal(err)
	}
	t.Cleanup(func() { pci.Restore(addr) })
	h, err := vfio.Open(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	c, err := New(h, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestLostCommand: a command the controller never sees (its doorbell write
// goes to a read-only register instead) times out; the driver aborts it,
// QEMU declines the abort, and the error says the id stays in use. The
// next doorbell makes the controller fetch both commands: the lost one's
// completion frees its id, the new read succeeds, and nothing is left in
// flight.
func TestLostCommand(t *testing.T) {
	c := guestNVMe(t, &Options{Timeout: time.Second})
	ns, err := c.Namespace(1)
	if err != nil {
		t.Fatal(err)
	}
	buf, _ := c.TakeBuffer(4096)
	q := c.io[0]
	q.mu.Lock()
	saved := q.sqDB
	q.sqDB = doorbell{reg: regVS} // writes to VS are ignored
	q.mu.Unlock()
	start := time.Now()
	err = ns.Read(q, 0, buf)
	took := time.Since(start)
	q.mu.Lock()
	q.sqDB = saved
	lost := q.lost
	q.mu.Unlock()
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "did not abort") || took < time.Second {
		t.Fatalf("a command the controller never saw: %v after %s; want ErrTimeout saying the abort was declined", err, took)
	}
	if lost != 1 {
		t.Errorf("%d commands lost, want 1", lost)
	}
	if err := ns.Read(q, 8, buf); err != nil {
		t.Fatalf("the next read: %v", err)
	}
	// The controller completes the two reads in either order.
	var free int
	for deadline := time.Now().Add(2 * time.Second); ; {
		q.mu.Lock()
		q.reap()
		lost, free = q.lost, len(q.free)
		q.mu.Unlock()
		if lost == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if lost != 0 || free != len(q.slots) {
		t.Errorf("after the lost command completed: %d lost, %d of %d ids free", lost, free, len(q.slots))
	}
}
