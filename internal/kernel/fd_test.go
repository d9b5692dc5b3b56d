package kernel

import (
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func TestFDCloseOnceAndLeaks(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	raw, _ := unix.Dup(int(r.Fd()))
	r.Close()
	f, err := NewFD(raw, "pipe")
	if err != nil {
		t.Fatal(err)
	}
	if got := Open(); len(got) != 1 || got[0] != "pipe" {
		t.Fatalf("Open() = %v", got)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close = %v, want ErrClosed", err)
	}
	if _, err := f.Ioctl(unix.TIOCINQ, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ioctl after Close = %v, want ErrClosed", err)
	}
	if got := Open(); len(got) != 0 {
		t.Fatalf("Open() after Close = %v", got)
	}
	if _, err := NewFD(-1, "bad"); err == nil {
		t.Fatal("NewFD(-1) succeeded")
	}
}

func TestErrorWraps(t *testing.T) {
	err := Errorf("VFIO_IOMMU_MAP_DMA", "/dev/vfio/vfio", unix.EINVAL, "iova=%#x", 0x1000)
	if !errors.Is(err, unix.EINVAL) || err.Error() != "VFIO_IOMMU_MAP_DMA on /dev/vfio/vfio (iova=0x1000): invalid argument" {
		t.Fatalf("err = %q", err)
	}
	ns := error(&NotSupportedError{Feature: "IOMMU_IOAS_MAP_FILE", Version: "6.13"})
	if !errors.Is(ns, ErrNotSupported) || ns.Error() != "IOMMU_IOAS_MAP_FILE not supported (needs Linux 6.13 or later)" {
		t.Fatalf("ns = %q", ns)
	}
}
