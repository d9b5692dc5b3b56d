package kernel

import (
	"errors"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/vfioerr"
)

// A Hint says what an errno means for one operation. It runs only when the
// call has failed, so it may read facts that cost something to learn (sysfs,
// the object's state, what the kernel wrote back).
type Hint func() string

// Say is a Hint with fixed text.
func Say(text string) Hint { return func() string { return text } }

// Hints maps the errnos of one operation to what they mean there. Tables
// that do not depend on the call are package variables, so a test can read
// every errno an operation explains.
type Hints map[unix.Errno]Hint

// Call names one kernel operation for the error it becomes if it fails.
// It is the one place a failed ioctl becomes an error: vfio, ioasid and
// dma describe their calls with it and never build an OpError afterwards.
type Call struct {
	Op     string // the ioctl or system call, e.g. VFIO_IOMMU_MAP_DMA
	Object string // what it went to; "" for the FD's name
	Args   string // its arguments as text
	Hints  Hints
	// Since is the Linux version that added Op: ENOTTY then means the
	// running kernel is older, and the error is a NotSupportedError.
	Since string
}

// Ioctl runs fn with f's descriptor held open; if fn fails (or f is
// closed), the error is the one c describes. It does not allocate unless
// it fails.
func (f *FD) Ioctl(c Call, fn func(raw int) error) error {
	f.mu.RLock()
	err := vfioerr.ErrClosed
	if f.raw >= 0 {
		err = fn(f.raw)
	}
	if err != nil && c.Object == "" {
		c.Object = f.name
	}
	f.mu.RUnlock()
	if err != nil {
		return c.Fail(err)
	}
	return nil
}

// Fail builds the error of c failing with err: a *vfioerr.NotSupportedError
// for ENOTTY of an operation newer than the kernel, else a
// *vfioerr.OpError carrying the hint c has for err's errno.
func (c Call) Fail(err error) error {
	var errno unix.Errno
	isErrno := errors.As(err, &errno)
	if isErrno && errno == unix.ENOTTY && c.Since != "" {
		// Or the descriptor is not the kind of file Op is for: the
		// feature names which file it went to.
		return &vfioerr.NotSupportedError{Feature: c.Op + " on " + c.Object, Version: c.Since}
	}
	e := &vfioerr.OpError{Op: c.Op, Object: c.Object, Args: c.Args, Err: err}
	if h := c.Hints[errno]; isErrno && h != nil {
		e.Hint = h()
	}
	return e
}

// Refuse is the error of a call refused before the kernel is asked: err
// (an errno, or a sentinel such as vfioerr.ErrClosed) and why.
func (c Call) Refuse(err error, why string) error {
	return &vfioerr.OpError{Op: c.Op, Object: c.Object, Args: c.Args, Err: err, Hint: why}
}

// MapHints are what a failed DMA map (type1 MAP_DMA, iommufd IOAS_MAP)
// means for its common errnos.
var MapHints = Hints{
	unix.ENOMEM: Say("pinning would exceed RLIMIT_MEMLOCK: raise it (ulimit -l, or LimitMEMLOCK= in a systemd unit) or map less"),
	unix.EEXIST: Say("the range overlaps an existing mapping"),
	unix.EINVAL: Say("iova, size and address must be aligned to the IOMMU page size, and the range inside the IOVA ranges"),
}
