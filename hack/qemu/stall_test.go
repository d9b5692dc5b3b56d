package qemu

import (
	"os"
	"path/filepath"
	"testing"
)

// TestStalled reads the RCU stall report of a real boot (compat/intel under
// TCG, its vCPU 1 stopped 45 s in) and nothing in a clean console log.
func TestStalled(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	stalled := write("stalled.console.log", "\x1b[?7l\x1b[2J[   45.861106] rcu: INFO: rcu_sched detected stalls on CPUs/tasks:\n"+
		"[   45.862386] rcu: \t1-...!: (0 ticks this GP) idle=a908/0/0x0 softirq=1582/1582 fqs=0 (false positive?)\n")
	if got, want := Stalled(stalled), "rcu: INFO: rcu_sched detected stalls on CPUs/tasks:"; got != want {
		t.Errorf("Stalled = %q, want %q", got, want)
	}
	clean := write("clean.console.log", "[    0.000000] Linux version 6.12.118\n[    1.2] vfio-pci 0000:00:03.0: enabling device\n[    2.0] rcu: Hierarchical RCU implementation.\n")
	if got := Stalled(clean); got != "" {
		t.Errorf("a clean boot reads as stalled: %q", got)
	}
	if got := Stalled(filepath.Join(dir, "missing")); got != "" {
		t.Errorf("a missing log reads as stalled: %q", got)
	}
}
