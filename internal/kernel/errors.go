package kernel

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// ErrClosed is returned for any use of an object after its Close.
var ErrClosed = errors.New("already closed")

// ErrNotSupported is wrapped by errors saying the running kernel lacks a
// feature; NotSupportedError names the version that added it.
var ErrNotSupported = errors.New("not supported")

// NotSupportedError says which feature is missing and which Linux version
// added it. errors.Is(err, ErrNotSupported) holds.
type NotSupportedError struct {
	Feature string
	Version string // "6.13"; empty when not tied to a version
	Reason  string // what else is needed, e.g. a kernel option
}

func (e *NotSupportedError) Error() string {
	s := e.Feature + " not supported"
	if e.Version != "" {
		s += " (needs Linux " + e.Version + " or later)"
	}
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

func (e *NotSupportedError) Is(target error) bool { return target == ErrNotSupported }

// Error is a failed kernel operation: Op is the ioctl or call
// (VFIO_IOMMU_MAP_DMA), Object the file it went to, Args its arguments as
// text, and Err the errno (errors.Is(err, unix.EINVAL) works) or a sentinel.
type Error struct {
	Op     string
	Object string
	Args   string
	Err    error
	Hint   string // what to do about it, when known
}

func (e *Error) Error() string {
	s := e.Op
	if e.Object != "" {
		s += " on " + e.Object
	}
	if e.Args != "" {
		s += " (" + e.Args + ")"
	}
	s += ": " + e.Err.Error()
	if e.Hint != "" {
		s += "; " + e.Hint
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf builds an Error whose Args are formatted lazily by the caller: call
// it only on the failure path so the success path does not allocate.
func Errorf(op, object string, err error, format string, args ...any) error {
	return &Error{Op: op, Object: object, Err: err, Args: fmt.Sprintf(format, args...)}
}

// MapError explains a failed DMA map (type1 MAP_DMA or iommufd IOAS_MAP):
// the errno, and what to do for the common ones.
func MapError(op, object, args string, err error) error {
	e := &Error{Op: op, Object: object, Args: args, Err: err}
	switch {
	case errors.Is(err, unix.ENOMEM):
		e.Hint = "pinning would exceed RLIMIT_MEMLOCK: raise it (ulimit -l, or LimitMEMLOCK= in a systemd unit) or map less"
	case errors.Is(err, unix.EEXIST):
		e.Hint = "the range overlaps an existing mapping"
	case errors.Is(err, unix.EINVAL):
		e.Hint = "iova, size and address must be aligned to the IOMMU page size, and the range inside the IOVA ranges"
	}
	return e
}
