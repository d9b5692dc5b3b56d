package sysfs

import (
	"os"
	"path/filepath"
	"testing"
)

func TestInterruptRemapping(t *testing.T) {
	dir := t.TempDir()
	defer func(p string) { ProcInterrupts = p }(ProcInterrupts)
	for want, text := range map[Remapping]string{
		RemapPresent: " 24:  0  0  IR-PCI-MSI 49152-edge  nvme0q0\n",
		RemapAbsent:  " 24:  0  0  PCI-MSI 49152-edge  nvme0q0\n",
		RemapUnknown: " 0:  1  0  timer\n",
	} {
		ProcInterrupts = filepath.Join(dir, "interrupts")
		if err := os.WriteFile(ProcInterrupts, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := InterruptRemapping(); got != want {
			t.Errorf("%q: %v, want %v", text, got, want)
		}
	}
	ProcInterrupts = filepath.Join(dir, "missing")
	if got := InterruptRemapping(); got != RemapUnknown {
		t.Errorf("no /proc/interrupts: %v", got)
	}
}
