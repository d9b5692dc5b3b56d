package kernel

import (
	"errors"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/allocs"
	"github.com/vfioctl/vfioctl/vfioerr"
)

func pipeFD(t *testing.T) *FD {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(p[1]) })
	f, err := NewFD(p[0], "pipe")
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestFDCloseOnceAndLeaks(t *testing.T) {
	f := pipeFD(t)
	if got := Open(); len(got) != 1 || got[0] != "pipe" {
		t.Fatalf("Open() = %v", got)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); !errors.Is(err, vfioerr.ErrClosed) {
		t.Fatalf("second Close = %v, want ErrClosed", err)
	}
	if err := f.Do(func(int) error { t.Fatal("Do ran after Close"); return nil }); !errors.Is(err, vfioerr.ErrClosed) {
		t.Fatalf("Do after Close = %v, want ErrClosed", err)
	}
	if _, err := f.Dup(); !errors.Is(err, vfioerr.ErrClosed) {
		t.Fatalf("Dup after Close = %v, want ErrClosed", err)
	}
	if got := Open(); len(got) != 0 {
		t.Fatalf("Open() after Close = %v", got)
	}
	if _, err := NewFD(-1, "bad"); !errors.Is(err, unix.EBADF) {
		t.Fatalf("NewFD(-1) = %v", err)
	}
}

// Close waits for calls in flight: the number cannot be closed (and reused)
// under an ioctl.
func TestFDCloseWaitsForUse(t *testing.T) {
	f := pipeFD(t)
	inside, release := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		f.Do(func(raw int) error {
			close(inside)
			<-release
			if _, err := unix.FcntlInt(uintptr(raw), unix.F_GETFD, 0); err != nil {
				t.Errorf("fd closed while in use: %v", err)
			}
			return nil
		})
	}()
	<-inside
	closed := make(chan error)
	go func() { closed <- f.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a call was in flight", err)
	default:
	}
	close(release)
	wg.Wait()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}

// Do with a closure over a stack struct allocates nothing: the ioctl hot
// path (map/unmap) depends on it.
func TestDoAllocatesNothing(t *testing.T) {
	f := pipeFD(t)
	defer f.Close()
	n := allocs.Count(100, func() {
		var calls int32
		if err := f.Do(func(raw int) error {
			_, err := unix.IoctlGetInt(raw, unix.TIOCINQ)
			calls++
			return err
		}); err != nil || calls != 1 {
			t.Fatalf("Do: %v after %d calls of its function", err, calls)
		}
	})
	if n != 0 {
		t.Fatalf("100 calls of Do allocate %d times, want 0", n)
	}
}

func TestDup(t *testing.T) {
	f := pipeFD(t)
	defer f.Close()
	d, err := f.Dup()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(d)
	flags, err := unix.FcntlInt(uintptr(d), unix.F_GETFD, 0)
	if err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Fatalf("dup flags %#x, %v", flags, err)
	}
}
