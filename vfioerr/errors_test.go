package vfioerr_test

import (
	"errors"
	"fmt"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/vfioerr"
)

func TestOpErrorWrapsErrno(t *testing.T) {
	err := fmt.Errorf("open: %w", &vfioerr.OpError{Op: "VFIO_IOMMU_MAP_DMA", Object: "/dev/vfio/vfio", Args: "iova=0x1000", Err: unix.EINVAL, Hint: "unaligned"})
	if !errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EBUSY) {
		t.Fatalf("errors.Is: %v", err)
	}
	var op *vfioerr.OpError
	if !errors.As(err, &op) || op.Args != "iova=0x1000" {
		t.Fatalf("errors.As: %v", err)
	}
	if want := "open: VFIO_IOMMU_MAP_DMA on /dev/vfio/vfio (iova=0x1000): invalid argument; unaligned"; err.Error() != want {
		t.Fatalf("Error() = %q, want %q", err, want)
	}
}

func TestNotSupported(t *testing.T) {
	err := error(&vfioerr.NotSupportedError{Feature: "IOMMU_IOAS_MAP_FILE", Version: "6.13"})
	if !errors.Is(err, vfioerr.ErrNotSupported) || errors.Is(err, vfioerr.ErrClosed) {
		t.Fatal("Is")
	}
	if err.Error() != "IOMMU_IOAS_MAP_FILE not supported (needs Linux 6.13 or later)" {
		t.Fatalf("%q", err)
	}
}

func TestGroupNotViable(t *testing.T) {
	err := error(&vfioerr.GroupNotViableError{Address: "0000:00:1f.3", Group: 4, Blockers: []vfioerr.Blocker{{Device: "0000:00:1f.2", Driver: "ahci"}}})
	if !errors.Is(err, vfioerr.ErrGroupNotViable) {
		t.Fatal("Is")
	}
	if want := "IOMMU group 4 of 0000:00:1f.3 is not viable: 0000:00:1f.2 (driver ahci) share(s) the group with a host driver bound"; err.Error() != want {
		t.Fatalf("%q", err)
	}
}
