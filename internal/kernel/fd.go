// Package kernel holds what vfio and ioasid share about talking to the
// kernel: an owned file descriptor with the Close contract, and the error
// explanations both need. Layouts and ioctl numbers live in uapi; the
// error types callers match live in vfioerr.
package kernel

import (
	"fmt"
	"os"
	"sort"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/vfioerr"
)

// FD is an owned file descriptor. The first Close releases it; a second
// Close, and any use after Close, fails with vfioerr.ErrClosed. Uses hold a
// read lock, so a Close waits for the ioctls in flight and the number can
// never be reused under them. Every open FD is listed by Open until it is
// closed or disowned, so tests can fail on leaks.
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
		return nil, Call{Op: "use fd", Object: name, Args: fmt.Sprint(raw)}.Fail(unix.EBADF)
	}
	f := &FD{raw: raw, name: name}
	openMu.Lock()
	open[f] = struct{}{}
	openMu.Unlock()
	return f, nil
}

// OpenPath opens path read-write and close-on-exec; hints explain its
// failures (nil for none).
func OpenPath(path string, hints Hints) (*FD, error) {
	raw, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, Call{Op: "open", Object: path, Hints: hints}.Fail(err)
	}
	return NewFD(raw, path)
}

// Name is what the FD was opened as, or last renamed to.
func (f *FD) Name() string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.name
}

// Rename changes what errors and leak reports call f (a device cdev opened
// by path is then known by its PCI address).
func (f *FD) Rename(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	openMu.Lock()
	defer openMu.Unlock()
	f.name = name
}

// Int returns the raw descriptor while f is open. The caller must not
// close it, and it may be closed (and its number reused) once Int returns:
// use Do to issue calls on it.
func (f *FD) Int() (int, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.raw < 0 {
		return -1, f.closedError("use")
	}
	return f.raw, nil
}

// Do calls fn with the raw descriptor, holding f open until fn returns.
// After Close it returns vfioerr.ErrClosed itself, for the caller to wrap
// with the operation it was. It does not allocate: fn does not escape.
func (f *FD) Do(fn func(raw int) error) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.raw < 0 {
		return vfioerr.ErrClosed
	}
	return fn(f.raw)
}

// NameOf is what /proc/self/fd says fd is (a path such as /dev/iommu, or
// anon_inode:[vfio-device]), for naming a descriptor handed over by
// another process; fallback when the kernel does not say.
func NameOf(fd int, fallback string) string {
	if p, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd)); err == nil {
		return p
	}
	return fallback
}

func (f *FD) closedError(op string) error {
	return Call{Op: op, Object: f.name}.Fail(vfioerr.ErrClosed)
}

// Close closes the descriptor; closing twice is an error (ErrClosed).
func (f *FD) Close() error {
	raw, err := f.take()
	if err != nil {
		return err
	}
	if err := unix.Close(raw); err != nil {
		return Call{Op: "close", Object: f.Name()}.Fail(err)
	}
	return nil
}

// Disown hands the raw descriptor to the caller, who now owns it; f is
// closed from then on.
func (f *FD) Disown() (int, error) { return f.take() }

// Dup returns a new close-on-exec descriptor for the same file, owned by
// the caller (for example to send it to another process).
func (f *FD) Dup() (int, error) {
	var fd int
	err := f.Do(func(raw int) error {
		var err error
		fd, err = unix.FcntlInt(uintptr(raw), unix.F_DUPFD_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return -1, Call{Op: "dup", Object: f.Name()}.Fail(err)
	}
	return fd, nil
}

func (f *FD) take() (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.raw < 0 {
		return -1, f.closedError("close")
	}
	raw := f.raw
	f.raw = -1
	openMu.Lock()
	delete(open, f)
	openMu.Unlock()
	return raw, nil
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
