package kernel

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/vfioerr"
)

// A failed call becomes one error, built where it fails: the hint its
// errno has for that operation (and none for others), ENOTTY of an
// operation newer than the kernel a NotSupportedError naming the version,
// and the errno matchable either way it is wrapped.
func TestCallFail(t *testing.T) {
	c := Call{Op: "VFIO_X", Object: "dev", Args: "a=1", Hints: Hints{unix.EBUSY: Say("busy here")}}
	var op *vfioerr.OpError
	err := c.Fail(unix.EBUSY)
	if !errors.As(err, &op) || !errors.Is(err, unix.EBUSY) || op.Hint != "busy here" || err.Error() != "VFIO_X on dev (a=1): device or resource busy; busy here" {
		t.Errorf("EBUSY: %v", err)
	}
	if err := c.Fail(unix.EPERM); !errors.As(err, &op) || op.Hint != "" {
		t.Errorf("EPERM, which has no hint: %v", err)
	}
	wrapped := tceLike{}
	if err := c.Fail(wrapped); !errors.As(err, &op) || op.Hint != "" || !errors.Is(err, unix.EINVAL) {
		t.Errorf("an error wrapping EINVAL, no hint for it: %v", err)
	}
	c.Hints[unix.EINVAL] = Say("bad value")
	if err := c.Fail(wrapped); !errors.As(err, &op) || op.Hint != "bad value" {
		t.Errorf("the hint of a wrapped errno: %v", err)
	}
	c.Since = "6.6"
	var ns *vfioerr.NotSupportedError
	if err := c.Fail(unix.ENOTTY); !errors.As(err, &ns) || !errors.Is(err, vfioerr.ErrNotSupported) || ns.Version != "6.6" || !strings.Contains(ns.Feature, "VFIO_X on dev") {
		t.Errorf("ENOTTY of an op since 6.6: %v", err)
	}
	if err := c.Fail(vfioerr.ErrClosed); !errors.Is(err, vfioerr.ErrClosed) {
		t.Errorf("ErrClosed: %v", err)
	}
	if err := c.Refuse(unix.EINVAL, "checked first"); !errors.As(err, &op) || op.Hint != "checked first" || !errors.Is(err, unix.EINVAL) {
		t.Errorf("Refuse: %v", err)
	}
}

type tceLike struct{}

func (tceLike) Error() string { return "returned 1" }
func (tceLike) Unwrap() error { return unix.EINVAL }

// Ioctl names the FD when the call does not, and does not allocate when
// the call succeeds.
func TestIoctl(t *testing.T) {
	f := pipeFD(t)
	err := f.Ioctl(Call{Op: "OP"}, func(int) error { return unix.EIO })
	if err == nil || !strings.HasPrefix(err.Error(), "OP on pipe:") {
		t.Errorf("failure: %v", err)
	}
	ok := func(int) error { return nil }
	if n := testing.AllocsPerRun(100, func() { _ = f.Ioctl(Call{Op: "OP"}, ok) }); n != 0 {
		t.Errorf("a successful Ioctl allocates %v times", n)
	}
	f.Close()
	if err := f.Ioctl(Call{Op: "OP"}, ok); !errors.Is(err, vfioerr.ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}
