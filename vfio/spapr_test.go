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
}

// nullContainer is a container on /dev/null with model t, for what is
// decided before the kernel is asked.
func nullContainer(t *testing.T, model IOMMUType) *Container {
	t.Helper()
	fd, err := kernel.OpenPath("/dev/null", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fd.Close() })
	c := &Container{fd: fd}
	c.setModel(model)
	return c
}

// The hints of a failed map are data: what EPERM and EINVAL mean depends
// on the version and on whether memory is registered, and a failure made
// by the kernel's positive answer carries the EINVAL one.
func TestSPAPRMapHints(t *testing.T) {
	s := newSPAPR(nullContainer(t, SPAPRTCEv2), SPAPRTCEv2)
	if got := s.mapHints()[unix.EPERM](); !strings.Contains(got, "nothing is registered") {
		t.Errorf("v2 EPERM with nothing registered: %q", got)
	}
	s.registered = append(s.registered, memRange(make([]byte, 1)))
	if got := s.mapHints()[unix.EPERM](); strings.Contains(got, "nothing is registered") || !strings.Contains(got, "one group per container") {
		t.Errorf("v2 EPERM with memory registered: %q", got)
	}
	v1 := newSPAPR(nullContainer(t, SPAPRTCE), SPAPRTCE)
	if got := v1.mapHints()[unix.EPERM](); !strings.Contains(got, "Enable") {
		t.Errorf("v1 EPERM: %q", got)
	}
	err := s.c.dmaCall(opMapDMA, 0x1000, 0x1000, s.mapHints()).Fail(errTCEParam)
	if !errors.Is(err, unix.EINVAL) || !strings.Contains(err.Error(), "registered first") {
		t.Errorf("positive refusal as an error: %v", err)
	}
}

// A type1 container has no SPAPR side, and the calls of one version refuse
// on the other before the kernel is asked.
func TestSPAPROnlyOnSPAPRContainers(t *testing.T) {
	if _, err := nullContainer(t, Type1v2).SPAPR(); !errors.Is(err, unix.EINVAL) || !strings.Contains(err.Error(), "type1v2") {
		t.Errorf("SPAPR of a type1v2 container: %v, want EINVAL naming the model", err)
	}
	v1, err := nullContainer(t, SPAPRTCE).SPAPR()
	if err != nil {
		t.Fatal(err)
	}
	v2, err := nullContainer(t, SPAPRTCEv2).SPAPR()
	if err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"v1 CreateWindow":      func() error { _, err := v1.CreateWindow(16, 1<<30, 1); return err }(),
		"v1 RemoveWindow":      v1.RemoveWindow(0),
		"v1 RegisterMemory":    v1.RegisterMemory(make([]byte, 4096)),
		"v2 Enable":            v2.Enable(),
		"v2 Disable":           v2.Disable(),
		"v1 NewSPAPRMapper":    func() error { _, err := NewSPAPRMapper(v1); return err }(),
		"type1 before a model": nullContainer(t, 0).Map(0, make([]byte, 8), 0),
	} {
		if !errors.Is(err, unix.EINVAL) {
			t.Errorf("%s: %v, want EINVAL", name, err)
		}
	}
	if SPAPRTCEv2.String() != "spapr-tce-v2" || !SPAPRTCE.IsSPAPR() || Type1.IsSPAPR() {
		t.Error("model names")
	}
}
