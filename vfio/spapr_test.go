package vfio

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/kernel"
)

// The SPAPR TCE container answers a map whose IOVA fails its parameter
// check with 1 and no errno: that must be an error matching EINVAL.
func TestPositiveRefusal(t *testing.T) {
	if err := positiveRefusal(0, nil); err != nil {
		t.Fatalf("0: %v", err)
	}
	if err := positiveRefusal(1, nil); !errors.Is(err, unix.EINVAL) || !errors.Is(err, errTCEParam) {
		t.Fatalf("1: %v, want EINVAL", err)
	}
	if err := positiveRefusal(-1, unix.ENXIO); err != unix.ENXIO {
		t.Fatalf("errno: %v", err)
	}
	if got := spaprMapHint(SPAPRTCEv2, errTCEParam, false); got != tceParamHint {
		t.Fatalf("hint %q", got)
	}
	// EPERM from a v2 map: nothing registered, or (memory registered) a
	// container the kernel refuses: another process's, or a second PE's.
	if got := spaprMapHint(SPAPRTCEv2, unix.EPERM, false); !strings.Contains(got, "nothing is registered") {
		t.Errorf("EPERM with nothing registered: %q", got)
	}
	if got := spaprMapHint(SPAPRTCEv2, unix.EPERM, true); strings.Contains(got, "nothing is registered") || !strings.Contains(got, "one group per container") {
		t.Errorf("EPERM with memory registered: %q", got)
	}
}

// Without a SPAPR model the SPAPR calls refuse before the kernel is asked.
func TestSPAPROnlyOnSPAPRContainers(t *testing.T) {
	fd, err := kernel.OpenPath("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	c := &Container{fd: fd}
	c.iommu.Store(int32(Type1v2))
	for name, err := range map[string]error{
		"SPAPRInfo":    func() error { _, err := c.SPAPRInfo(); return err }(),
		"CreateWindow": func() error { _, err := c.CreateWindow(16, 1<<30, 1); return err }(),
		"RemoveWindow": c.RemoveWindow(0),
		"Enable":       c.Enable(),
		"Disable":      c.Disable(),
	} {
		if !errors.Is(err, unix.EINVAL) {
			t.Errorf("%s on a type1v2 container: %v, want EINVAL", name, err)
		}
	}
	if _, err := NewSPAPRMapper(c); !errors.Is(err, unix.EINVAL) {
		t.Errorf("NewSPAPRMapper of a type1v2 container: %v", err)
	}
	if SPAPRTCEv2.String() != "spapr-tce-v2" || !SPAPRTCE.IsSPAPR() || Type1.IsSPAPR() {
		t.Error("model names")
	}
}
