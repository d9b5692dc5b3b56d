package vfio

import (
	"bufio"
	"os"
	"strings"

	"github.com/vfioctl/vfioctl/vfioerr"
)

// The sentinels of package vfioerr, for callers that import only vfio.
var (
	ErrClosed         = vfioerr.ErrClosed         // use of an object after its Close
	ErrNotSupported   = vfioerr.ErrNotSupported   // the running kernel lacks the feature
	ErrGroupNotViable = vfioerr.ErrGroupNotViable // a group member is bound to a host driver
)

// unsafeInterruptsHint explains EPERM from VFIO_SET_IOMMU, GET_DEVICE_FD,
// SET_CONTAINER or BIND_IOMMUFD. The usual cause is an IOMMU without
// interrupt remapping, which VFIO refuses unless told to allow unsafe
// interrupts; it blames that only where the facts say so.
func unsafeInterruptsHint() string {
	if paramOn("vfio_iommu_type1") && paramOn("iommufd") {
		return "unsafe interrupts are already allowed, so interrupt remapping is not the cause"
	}
	switch interruptRemapping() {
	case remapAbsent:
		return "the IOMMU has no interrupt remapping, so a device could forge MSIs, and VFIO refuses it: boot with vfio_iommu_type1.allow_unsafe_interrupts=1 and iommufd.allow_unsafe_interrupts=1 if you accept the risk"
	case remapUnknown:
		return "if the IOMMU lacks interrupt remapping, VFIO refuses devices unless vfio_iommu_type1.allow_unsafe_interrupts=1 and iommufd.allow_unsafe_interrupts=1"
	}
	return ""
}

// paramOn reads a module's allow_unsafe_interrupts parameter (built-in
// modules have one too).
func paramOn(module string) bool {
	b, err := os.ReadFile("/sys/module/" + module + "/parameters/allow_unsafe_interrupts")
	return err == nil && strings.TrimSpace(string(b)) == "Y"
}

type remapState int

const (
	remapUnknown remapState = iota
	remapPresent
	remapAbsent
)

// interruptRemapping reads /proc/interrupts: with remapping, x86 names its
// interrupt chips IR-IO-APIC and IR-PCI-MSI, and an arm64 GICv3 ITS (which
// isolates MSIs) ITS-MSI; without it, PCI-MSI and IO-APIC appear bare.
func interruptRemapping() remapState {
	f, err := os.Open("/proc/interrupts")
	if err != nil {
		return remapUnknown
	}
	defer f.Close()
	seenMSI := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, " IR-") || strings.Contains(line, "ITS-") {
			return remapPresent
		}
		if strings.Contains(line, "PCI-MSI") || strings.Contains(line, "IO-APIC") {
			seenMSI = true
		}
	}
	if seenMSI {
		return remapAbsent
	}
	return remapUnknown
}
