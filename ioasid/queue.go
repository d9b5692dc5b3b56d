package ioasid

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// queue is the fd of an iommufd object that delivers records to user space
// (a fault queue, a vEVENTQ). It is read through Go's poller, so a Close
// from another goroutine ends a Read in progress instead of racing it.
type queue struct {
	f      *os.File
	name   string
	once   sync.Once
	err    error
	closed atomic.Bool
}

func newQueue(raw int, name string) (*queue, error) {
	if err := unix.SetNonblock(raw, true); err != nil {
		unix.Close(raw)
		return nil, kernel.Call{Op: "set non-blocking", Object: name}.Fail(err)
	}
	return &queue{f: os.NewFile(uintptr(raw), name), name: name}, nil
}

func (q *queue) wrap(op string, err error) error {
	if q.closed.Load() || errors.Is(err, os.ErrClosed) {
		err = vfioerr.ErrClosed // os reports a closed file in more than one way
	}
	return kernel.Call{Op: op, Object: q.name}.Fail(err)
}

// read reads into buf, waiting at most timeout (0: until data or Close).
// It returns 0 bytes and no error on timeout.
func (q *queue) read(buf []byte, timeout time.Duration) (int, error) {
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	if err := q.f.SetReadDeadline(deadline); err != nil {
		return 0, q.wrap("read", err)
	}
	rc, err := q.f.SyscallConn()
	if err != nil {
		return 0, q.wrap("read", err)
	}
	// An empty iommufd queue reads 0 bytes rather than EAGAIN: both mean
	// wait until poll says a record is there (or the deadline, or Close).
	var n int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		n, rerr = unix.Read(int(fd), buf)
		return !(rerr == unix.EAGAIN || (rerr == nil && n == 0))
	})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return 0, nil
	}
	if err == nil {
		err = rerr
	}
	if err != nil {
		return 0, q.wrap("read", err)
	}
	return n, nil
}

func (q *queue) write(b []byte) error {
	if _, err := q.f.Write(b); err != nil {
		return q.wrap("write", err)
	}
	return nil
}

// close closes the file once; a retried object Close does not close it again.
func (q *queue) close() error {
	q.once.Do(func() {
		q.closed.Store(true)
		if err := q.f.Close(); err != nil {
			q.err = q.wrap("close", err)
		}
	})
	return q.err
}
