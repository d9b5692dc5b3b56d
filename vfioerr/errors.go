package vfioerr

import (
	"errors"
	"fmt"
	"strings"
)

// ErrClosed is matched by every use of an object after its Close, and by a
// second Close.
var ErrClosed = errors.New("use of closed object")

// ErrNotSupported is matched by a NotSupportedError: the running kernel (or
// its IOMMU) lacks a feature.
var ErrNotSupported = errors.New("not supported")

// ErrGroupNotViable is matched by a GroupNotViableError.
var ErrGroupNotViable = errors.New("IOMMU group is not viable")

// OpError is a failed kernel operation. errors.Is(err, unix.EINVAL) and the
// like match its Err.
type OpError struct {
	Op     string // the ioctl or system call, e.g. VFIO_IOMMU_MAP_DMA
	Object string // the file it went to, e.g. /dev/vfio/vfio or 0000:00:03.0
	Args   string // its arguments as text, e.g. "iova=0x2000 size=0x1000"
	Err    error  // the errno, or a sentinel such as ErrClosed
	Hint   string // what is known about the cause, when more than the errno
}

func (e *OpError) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	if e.Object != "" {
		b.WriteString(" on ")
		b.WriteString(e.Object)
	}
	if e.Args != "" {
		b.WriteString(" (")
		b.WriteString(e.Args)
		b.WriteString(")")
	}
	b.WriteString(": ")
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	}
	if e.Hint != "" {
		b.WriteString("; ")
		b.WriteString(e.Hint)
	}
	return b.String()
}

func (e *OpError) Unwrap() error { return e.Err }

// NotSupportedError says which feature the running kernel lacks and which
// Linux version added it. errors.Is(err, ErrNotSupported) holds.
type NotSupportedError struct {
	Feature string // e.g. IOMMU_IOAS_MAP_FILE on /dev/iommu
	Version string // the Linux version that added it, e.g. "6.13"; empty when no version gives it
	Reason  string // what else is needed, e.g. a kernel option or IOMMU capability
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

// Blocker is a member of an IOMMU group whose driver keeps the group from
// being viable.
type Blocker struct {
	Device string `json:"device"` // PCI address
	Driver string `json:"driver"` // the host driver bound to it
}

func (b Blocker) String() string { return fmt.Sprintf("%s (driver %s)", b.Device, b.Driver) }

// GroupNotViableError says which members keep an IOMMU group from being
// usable by VFIO: each is bound to a host driver other than vfio-pci or
// pci-stub. errors.Is(err, ErrGroupNotViable) holds.
type GroupNotViableError struct {
	// Address, when set, is the device whose use was asked for (a bind or
	// an open); it may be one of the group's viable members.
	Address  string
	Group    int
	Blockers []Blocker
}

func (e *GroupNotViableError) Error() string {
	parts := make([]string, len(e.Blockers))
	for i, b := range e.Blockers {
		parts[i] = b.String()
	}
	s := fmt.Sprintf("IOMMU group %d is not viable", e.Group)
	if e.Address != "" {
		s = fmt.Sprintf("IOMMU group %d of %s is not viable", e.Group, e.Address)
	}
	if len(parts) > 0 {
		s += ": " + strings.Join(parts, ", ") + " share(s) the group with a host driver bound"
	}
	return s
}

func (e *GroupNotViableError) Is(target error) bool { return target == ErrGroupNotViable }
