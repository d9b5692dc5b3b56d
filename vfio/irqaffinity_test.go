package vfio

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/vfioctl/vfioctl/vfioerr"
)

// The guests steer real vectors (the NVMe benchmark's MSI-X rows); this
// reads a /proc/interrupts as 6.12 writes it.
func TestIRQAffinity(t *testing.T) {
	d, _ := fakePCIDevice(t, "0000:02:00.0")
	proc := t.TempDir()
	old := procRoot
	procRoot = proc
	t.Cleanup(func() { procRoot = old })
	interrupts := `           CPU0       CPU1
 31:         16          0  IR-PCI-MSIX-0000:02:00.0   0-edge      nvme0q0
 44:          3          0  IR-PCI-MSIX-0000:03:00.0   1-edge      vfio-msix[1](0000:03:00.0)
 45:          0        812  IR-PCI-MSIX-0000:02:00.0   1-edge      vfio-msix[1](0000:02:00.0)
 46:          0          0  IR-PCI-MSI-0000:02:00.0    0-edge      vfio-msi[0](0000:02:00.0)
NMI:          0          0   Non-maskable interrupts
`
	if err := os.WriteFile(filepath.Join(proc, "interrupts"), []byte(interrupts), 0o644); err != nil {
		t.Fatal(err)
	}
	aff := filepath.Join(proc, "irq", "45", "smp_affinity_list")
	if err := os.MkdirAll(filepath.Dir(aff), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(aff, []byte("0-1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if irq, err := d.IRQ(MSIXIRQ, 1); err != nil || irq != 45 {
		t.Errorf("IRQ(MSI-X 1) = %d, %v; want 45 (not the other device's 44)", irq, err)
	}
	if irq, err := d.IRQ(MSIIRQ, 0); err != nil || irq != 46 {
		t.Errorf("IRQ(MSI 0) = %d, %v; want 46", irq, err)
	}
	if _, err := d.IRQ(MSIXIRQ, 2); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an unwired vector: %v, want os.ErrNotExist", err)
	}
	if _, err := d.IRQ(IntxIRQ, 0); !errors.Is(err, vfioerr.ErrNotSupported) {
		t.Errorf("INTx: %v, want ErrNotSupported", err)
	}
	prev, err := d.SetIRQAffinity(MSIXIRQ, 1, 1)
	if err != nil || !slices.Equal(prev, []int{0, 1}) {
		t.Fatalf("SetIRQAffinity: %v, %v; want the previous [0 1]", prev, err)
	}
	if b, _ := os.ReadFile(aff); string(b) != "1" {
		t.Errorf("smp_affinity_list holds %q, want 1", b)
	}
	if _, err := d.SetIRQAffinity(MSIXIRQ, 1); err == nil {
		t.Error("no CPUs was accepted")
	}
}

func TestParseCPUList(t *testing.T) {
	for in, want := range map[string][]int{"0": {0}, "0-2,5": {0, 1, 2, 5}, "3,1": {3, 1}} {
		if got, err := parseCPUList(in); err != nil || !slices.Equal(got, want) {
			t.Errorf("%q: %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "a", "2-1", "1-x"} {
		if _, err := parseCPUList(bad); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
}
