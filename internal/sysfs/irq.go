package sysfs

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
)

// Remapping says whether the host's IOMMU remaps interrupts.
type Remapping int

const (
	RemapUnknown Remapping = iota // nothing in /proc/interrupts tells
	RemapPresent
	RemapAbsent
)

// InterruptRemapping reads /proc/interrupts: with remapping, x86 names its
// interrupt chips IR-IO-APIC and IR-PCI-MSI, and an arm64 GICv3 ITS (which
// isolates MSIs) ITS-MSI; without it, PCI-MSI and IO-APIC appear bare.
func InterruptRemapping() Remapping {
	f, err := os.Open(ProcInterrupts)
	if err != nil {
		return RemapUnknown
	}
	defer f.Close()
	seenMSI := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, " IR-") || strings.Contains(line, "ITS-") {
			return RemapPresent
		}
		if strings.Contains(line, "PCI-MSI") || strings.Contains(line, "IO-APIC") {
			seenMSI = true
		}
	}
	if seenMSI {
		return RemapAbsent
	}
	return RemapUnknown
}

// ProcInterrupts is the file InterruptRemapping reads; tests point it at a fake.
var ProcInterrupts = "/proc/interrupts"

// UnsafeInterrupts is a module's allow_unsafe_interrupts parameter
// (vfio_iommu_type1, iommufd; built-in modules have one too): "Y", "N", or
// "" when the module is absent.
func UnsafeInterrupts(module string) string {
	b, err := os.ReadFile(filepath.Join(Root, "module", module, "parameters", "allow_unsafe_interrupts"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
