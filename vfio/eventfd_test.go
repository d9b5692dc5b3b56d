package vfio

import (
	"errors"
	"testing"
	"time"

	"github.com/vfioctl/vfioctl/vfioerr"
)

// Eventfd keeps the Close contract: a Wait in progress ends with ErrClosed
// when another goroutine closes it; later uses and Closes fail the same way.
func TestEventfdCloseContract(t *testing.T) {
	e, err := CreateEventfd()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Signal(3); err != nil {
		t.Fatal(err)
	}
	if n, err := e.Wait(time.Second); n != 3 || err != nil {
		t.Fatalf("Wait = %d, %v; want 3", n, err)
	}
	if n, err := e.Wait(10 * time.Millisecond); n != 0 || err != nil {
		t.Fatalf("Wait on an empty counter = %d, %v; want a timeout", n, err)
	}
	done := make(chan error)
	go func() { _, err := e.Wait(time.Minute); done <- err }()
	time.Sleep(50 * time.Millisecond)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, vfioerr.ErrClosed) {
			t.Fatalf("Wait ended by Close = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a Wait in progress")
	}
	for name, err := range map[string]error{
		"Close":  e.Close(),
		"Signal": e.Signal(1),
		"Wait":   func() error { _, err := e.Wait(time.Millisecond); return err }(),
		"FD":     func() error { _, err := e.FD(); return err }(),
	} {
		if !errors.Is(err, vfioerr.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}
