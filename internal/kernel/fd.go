// Package kernel holds what vfio and ioasid share about talking to the
// kernel: an owned file descriptor, ioctl calls, and errors that name the
// operation and wrap the errno.
package kernel

import (
	"fmt"
	"sort"
	"sync"

	"golang.org/x/sys/unix"
)

// FD is an owned file descriptor. Close releases it exactly once; a second
// Close, or any use after Close, fails with ErrClosed. Every open FD is
// listed by Open until it is closed or disowned, so tests can fail on leaks.
type FD struct {
	mu   sync.RWMutex
	raw  int
	name string
}

var (
	openMu sync.Mutex
	open   = map[*FD]struct{}{}
)

// NewFD takes ownership of raw; name says what it is, for errors and leak
// reports (e.g. "/dev/vfio/12").
func NewFD(raw int, name string) (*FD, error) {
	if raw < 0 {
		return nil, fmt.Errorf("%s: invalid file descriptor %d", name, raw)
	}
	f := &FD{raw: raw, name: name}
	openMu.Lock()
	open[f] = struct{}{}
	openMu.Unlock()
	return f, nil
}

// OpenPath opens path read-write and close-on-exec.
func OpenPath(path string) (*FD, error) {
	raw, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &Error{Op: "open", Object: path, Err: err}
	}
	return NewFD(raw, path)
}

// Name is what the FD was opened as.
func (f *FD) Name() string { return f.name }

// Int returns the raw descriptor while f is open. The caller must not
// close it; use Disown to take it over.
func (f *FD) Int() (int, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.raw < 0 {
		return -1, &Error{Op: "use", Object: f.name, Err: ErrClosed}
	}
	return f.raw, nil
}

// Close closes the descriptor; closing twice is an error (ErrClosed).
func (f *FD) Close() error {
	raw, err := f.take()
	if err != nil {
		return err
	}
	if err := unix.Close(raw); err != nil {
		return &Error{Op: "close", Object: f.name, Err: err}
	}
	return nil
}

// Disown hands the raw descriptor to the caller, who now owns it.
func (f *FD) Disown() (int, error) { return f.take() }

func (f *FD) take() (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.raw < 0 {
		return -1, &Error{Op: "close", Object: f.name, Err: ErrClosed}
	}
	raw := f.raw
	f.raw = -1
	openMu.Lock()
	delete(open, f)
	openMu.Unlock()
	return raw, nil
}

// Ioctl issues an ioctl whose argument is a pointer or integer, holding f
// open for the duration. It does not allocate.
func (f *FD) Ioctl(req uint, arg uintptr) (uintptr, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.raw < 0 {
		return 0, ErrClosed
	}
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(f.raw), uintptr(req), arg)
	if errno != 0 {
		return r, errno
	}
	return r, nil
}

// Open lists the FDs still open, sorted by name: a test's cleanup can
// assert that it leaked none.
func Open() []string {
	openMu.Lock()
	defer openMu.Unlock()
	var names []string
	for f := range open {
		names = append(names, f.name)
	}
	sort.Strings(names)
	return names
}
