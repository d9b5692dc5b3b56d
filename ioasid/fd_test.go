package ioasid

import (
	"errors"
	"strings"
	"testing"

	"github.com/vfioctl/vfioctl/vfioerr"
	"golang.org/x/sys/unix"
)

// /dev/null answers every ioctl with ENOTTY, like a kernel that lacks it:
// every iommufd ioctl must turn that into ErrNotSupported naming the
// version that added it and the file it went to.
func TestENOTTYNamesTheKernelVersion(t *testing.T) {
	fd := devNull(t)
	err := fd.ChangeProcess()
	if !errors.Is(err, vfioerr.ErrNotSupported) || !strings.Contains(err.Error(), "Linux 6.14") {
		t.Errorf("ChangeProcess = %v, want ErrNotSupported naming Linux 6.14", err)
	}
	ioas, _ := fd.IOASByID(1)
	err = ioas.MapFile(0x1000, 0, 0, 4096, 3)
	if !errors.Is(err, vfioerr.ErrNotSupported) || !strings.Contains(err.Error(), "Linux 6.13") {
		t.Errorf("MapFile = %v, want ErrNotSupported naming Linux 6.13", err)
	}
	_, err = fd.AllocFaultQueue()
	if !errors.Is(err, vfioerr.ErrNotSupported) || !strings.Contains(err.Error(), "IOMMU_FAULT_QUEUE_ALLOC") || !strings.Contains(err.Error(), "Linux 6.11") {
		t.Errorf("AllocFaultQueue = %v, want ErrNotSupported naming Linux 6.11", err)
	}
	_, err = fd.AllocIOAS()
	if !errors.Is(err, vfioerr.ErrNotSupported) || !strings.Contains(err.Error(), "Linux 6.2") || !strings.Contains(err.Error(), "IOMMU_IOAS_ALLOC on /dev/null") {
		t.Errorf("AllocIOAS = %v, want ErrNotSupported naming Linux 6.2", err)
	}
	if err := fd.Close(); err != nil {
		t.Fatal(err)
	}
	if err := fd.Close(); !errors.Is(err, vfioerr.ErrClosed) {
		t.Errorf("second Close = %v", err)
	}
	if _, err := fd.AllocIOAS(); !errors.Is(err, vfioerr.ErrClosed) {
		t.Errorf("AllocIOAS after Close = %v", err)
	}
}

func devNull(t *testing.T) *FD {
	t.Helper()
	raw, err := unix.Open("/dev/null", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := NewFD(raw)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fd.Close() }) // ErrClosed where the test closed it
	return fd
}

// A borrowed IOAS never reaches the kernel after Close: on /dev/null a call
// that reaches the kernel says ErrNotSupported, one that does not says
// ErrClosed.
func TestBorrowedIOASClosed(t *testing.T) {
	fd := devNull(t)
	ioas, err := fd.IOASByID(7)
	if err != nil {
		t.Fatal(err)
	}
	mem := make([]byte, 4096)
	if err := ioas.Map(0x1000, mem, 3); !errors.Is(err, vfioerr.ErrNotSupported) {
		t.Fatalf("Map before Close = %v, want the kernel's answer", err)
	}
	if err := ioas.Close(); err != nil {
		t.Fatalf("Close of a borrowed IOAS = %v", err)
	}
	for name, call := range map[string]func() error{
		"Map":        func() error { return ioas.Map(0x1000, mem, 3) },
		"Unmap":      func() error { return ioas.Unmap(0x1000, 4096) },
		"UnmapAll":   func() error { _, err := ioas.UnmapAll(); return err },
		"Ranges":     func() error { _, _, err := ioas.Ranges(); return err },
		"AllowIOVAs": func() error { return ioas.AllowIOVAs(nil) },
		"MapFile":    func() error { return ioas.MapFile(0, 0, 0, 4096, 3) },
		"Close":      ioas.Close,
	} {
		if err := call(); !errors.Is(err, vfioerr.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}

// A destroy the kernel refuses leaves the object open: Close can be retried
// and the object still works.
func TestFailedDestroyIsRetryable(t *testing.T) {
	fd := devNull(t)
	ioas := &IOAS{object: object{fd: fd, kind: "ioas", id: 9}}
	for i := 0; i < 2; i++ {
		if err := ioas.Close(); errors.Is(err, vfioerr.ErrClosed) || !errors.Is(err, vfioerr.ErrNotSupported) {
			t.Fatalf("Close #%d = %v, want the kernel's refusal, not ErrClosed", i+1, err)
		}
	}
	if _, _, err := ioas.Ranges(); errors.Is(err, vfioerr.ErrClosed) {
		t.Fatalf("Ranges after a failed Close = %v", err)
	}
}

// Close racing with uses: every use either reaches the kernel or fails
// with ErrClosed, and exactly one Close wins (run with -race).
func TestCloseRace(t *testing.T) {
	fd := devNull(t)
	ioas, _ := fd.IOASByID(3)
	mem := make([]byte, 4096)
	done := make(chan int)
	for g := 0; g < 4; g++ {
		go func() {
			wins := 0
			for i := 0; i < 200; i++ {
				if err := ioas.Map(0x1000, mem, 3); !errors.Is(err, vfioerr.ErrClosed) && !errors.Is(err, vfioerr.ErrNotSupported) {
					t.Errorf("Map = %v", err)
				}
				if ioas.Close() == nil {
					wins++
				}
			}
			done <- wins
		}()
	}
	total := 0
	for g := 0; g < 4; g++ {
		total += <-done
	}
	if total != 1 {
		t.Fatalf("%d Closes succeeded, want exactly 1", total)
	}
}
