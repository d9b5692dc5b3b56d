package ioasid

import (
	"sync"
	"time"

	"github.com/vfioctl/vfioctl/internal/kernel"
)

// queue is the fd of an iommufd object that delivers records to user space
// (a fault queue, a vEVENTQ), waited on through kernel.Waitable.
type queue struct {
	w    *kernel.Waitable
	once sync.Once
	err  error
}

func newQueue(raw int, name string) (*queue, error) {
	w, err := kernel.NewWaitable(raw, name)
	if err != nil {
		return nil, err
	}
	return &queue{w: w}, nil
}

// read reads into buf, waiting at most timeout (0: until data or Close).
// It returns 0 bytes and no error on timeout.
func (q *queue) read(buf []byte, timeout time.Duration) (int, error) {
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	return q.w.Read(buf, deadline)
}

func (q *queue) write(b []byte) error { return q.w.Write(b) }

// close closes the file once; a retried object Close does not close it again.
func (q *queue) close() error {
	q.once.Do(func() { q.err = q.w.Close() })
	return q.err
}
