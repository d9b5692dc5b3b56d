package ioasid

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/kernel"
)

// /dev/null answers every ioctl with ENOTTY, like a kernel that lacks it:
// every iommufd ioctl must turn that into ErrNotSupported naming the
// version that added it and the file it went to.
func TestENOTTYNamesTheKernelVersion(t *testing.T) {
	raw, err := unix.Open("/dev/null", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := NewFD(raw, "/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	err = fd.ChangeProcess()
	if !errors.Is(err, ErrNotSupported) || !strings.Contains(err.Error(), "Linux 6.14") {
		t.Errorf("ChangeProcess = %v, want ErrNotSupported naming Linux 6.14", err)
	}
	ioas, _ := fd.IOASByID(1)
	err = ioas.MapFile(0x1000, 0, 0, 4096, 3)
	if !errors.Is(err, ErrNotSupported) || !strings.Contains(err.Error(), "Linux 6.13") {
		t.Errorf("MapFile = %v, want ErrNotSupported naming Linux 6.13", err)
	}
	_, err = fd.AllocFaultQueue()
	if !errors.Is(err, ErrNotSupported) || !strings.Contains(err.Error(), "IOMMU_FAULT_QUEUE_ALLOC") || !strings.Contains(err.Error(), "Linux 6.11") {
		t.Errorf("AllocFaultQueue = %v, want ErrNotSupported naming Linux 6.11", err)
	}
	_, err = fd.AllocIOAS()
	if !errors.Is(err, ErrNotSupported) || !strings.Contains(err.Error(), "Linux 6.2") || !strings.Contains(err.Error(), "IOMMU_IOAS_ALLOC on /dev/null") {
		t.Errorf("AllocIOAS = %v, want ErrNotSupported naming Linux 6.2", err)
	}
	if err := fd.Close(); err != nil {
		t.Fatal(err)
	}
	if err := fd.Close(); !errors.Is(err, kernel.ErrClosed) {
		t.Errorf("second Close = %v", err)
	}
	if _, err := fd.AllocIOAS(); !errors.Is(err, kernel.ErrClosed) {
		t.Errorf("AllocIOAS after Close = %v", err)
	}
}
