package ioasid

import (
	"fmt"
	"sync"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// object is an iommufd object: an id inside an FD, with the one Close
// contract every object keeps. Uses hold a read lock, so Close waits for
// those in flight; the first Close that succeeds destroys the object
// (IOMMU_DESTROY) and every later use or Close fails with ErrClosed. A
// destroy the kernel refuses (EBUSY while a device is attached) leaves the
// object open, so Close can be retried. A borrowed object (the compat IOAS,
// one wrapped by id) is not destroyed, but is just as closed afterwards.
type object struct {
	fd       *FD
	kind     string // "ioas", "hwpt", ... for messages
	id       uint32
	borrowed bool

	mu     sync.RWMutex
	closed bool
}

func (o *object) String() string { return fmt.Sprintf("%s %d", o.kind, o.id) }

// use runs fn with the id while the object is open.
func (o *object) use(op string, fn func(id uint32) error) error {
	o.mu.RLock()
	defer o.mu.RUnlock()
	if o.closed {
		return o.closedError(op)
	}
	return fn(o.id)
}

func (o *object) closedError(op string) error {
	return kernel.Call{Op: op, Object: o.fd.Name(), Args: o.String()}.Fail(vfioerr.ErrClosed)
}

// close runs release (the object's own teardown before the destroy, may be
// nil) and destroys the object, marking it closed only when both succeed.
func (o *object) close(release func() error) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return o.closedError("IOMMU_DESTROY")
	}
	if release != nil {
		if err := release(); err != nil {
			return err
		}
	}
	if !o.borrowed {
		if err := o.fd.Destroy(o.id); err != nil {
			return err
		}
	}
	o.closed = true
	return nil
}
