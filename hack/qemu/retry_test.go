package qemu

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBootRetrying: a boot whose guest stalled is booted once more, on the
// NVMe image as the caller made it (CI once booted a stalled compat/virtio
// again on the image its first boot's tests had written, and every NVMe
// test found data that was not the host's); a boot whose tests failed is
// not booted again.
func TestBootRetrying(t *testing.T) {
	dir := t.TempDir()
	host := bytes.Repeat([]byte("host"), 1<<14)
	for _, c := range []struct {
		name    string
		console string // of the first boot
		boots   int
	}{
		{"stalled vCPU", "[   45.8] rcu: INFO: rcu_sched detected stalls on CPUs/tasks:\n", 2},
		{"a test failed", "[    0.0] Linux version 6.12\n", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			image := filepath.Join(t.TempDir(), "nvme.img")
			if err := os.WriteFile(image, host, 0o644); err != nil {
				t.Fatal(err)
			}
			var seen [][]byte
			boot := func(s Spec) (*Result, error) {
				b, err := os.ReadFile(s.NVMeImage)
				if err != nil {
					return nil, err
				}
				seen = append(seen, b)
				// The guest's tests write the image, as TestNVMeIntegrity does.
				if err := os.WriteFile(s.NVMeImage, bytes.Repeat([]byte("gst!"), 1<<14), 0o644); err != nil {
					return nil, err
				}
				log := filepath.Join(dir, fmt.Sprintf("%s-%d.console.log", strings.ReplaceAll(c.name, " ", "-"), len(seen)))
				console := c.console
				if len(seen) > 1 {
					console = "[    0.0] Linux version 6.12\n"
				}
				return &Result{ConsoleLog: log, Done: true}, os.WriteFile(log, []byte(console), 0o644)
			}
			var logged []string
			res, err := bootRetrying(Spec{Kernel: "compat", Profile: "virtio", NVMeImage: image}, boot,
				func(f string, a ...any) { logged = append(logged, fmt.Sprintf(f, a...)) })
			if err != nil {
				t.Fatal(err)
			}
			if !res.Done || len(seen) != c.boots {
				t.Fatalf("booted %d times (done %v), want %d", len(seen), res.Done, c.boots)
			}
			for i, b := range seen {
				if !bytes.Equal(b, host) {
					t.Errorf("boot %d found the image starting %q, want the host's %q", i+1, b[:8], host[:8])
				}
			}
			if c.boots > 1 && (len(logged) != 1 || !strings.Contains(logged[0], "stalled vCPU") || !strings.Contains(logged[0], "booting it again")) {
				t.Errorf("logged %q, want the stall and the second boot named", logged)
			}
			left, _ := filepath.Glob(image + ".*")
			if len(left) != 0 {
				t.Errorf("the image's saved copy stayed: %v", left)
			}
		})
	}
}
