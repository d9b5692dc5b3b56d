package nvme

import (
	"fmt"
	"sync"

	"github.com/vfioctl/vfioctl/dma"
)

// pool is one DMA buffer mapped once at one IOVA range; queues, PRP lists
// and data buffers are carved out of it, so no I/O maps anything.
type pool struct {
	mapper dma.Mapper
	buf    *dma.Buffer
	base   uint64 // IOVA of buf's first byte

	mu    sync.Mutex
	parts *dma.Allocator // [base, base+len) carved into pieces
}

func newPool(m dma.Mapper, size int) (*pool, error) {
	size = (size + pageSize - 1) &^ (pageSize - 1)
	iovas, err := dma.NewAllocatorFor(m)
	if err != nil {
		return nil, err
	}
	buf, err := dma.CreateBuffer(size)
	if err != nil {
		return nil, err
	}
	base, err := iovas.Reserve(uint64(size))
	if err != nil {
		buf.Close()
		return nil, fmt.Errorf("nvme: no IOVA room for a %d-byte DMA pool: %w", size, err)
	}
	if err := m.Map(base, buf.Bytes(), dma.ReadWrite); err != nil {
		buf.Close()
		return nil, err
	}
	parts, err := dma.NewAllocator([]dma.Range{{Start: base, Last: base + uint64(size) - 1}}, pageSize)
	if err != nil {
		m.Unmap(base, uint64(size))
		buf.Close()
		return nil, err
	}
	return &pool{mapper: m, buf: buf, base: base, parts: parts}, nil
}

// Buffer is DMA memory from a controller's pool: the bytes the process
// sees and the IOVA the controller reaches them at. It is page aligned.
type Buffer struct {
	b    []byte
	iova uint64
}

// Bytes is the buffer's memory.
func (b Buffer) Bytes() []byte { return b.b }

// IOVA is where the controller sees Bytes()[0].
func (b Buffer) IOVA() uint64 { return b.iova }

// Len is the buffer's size.
func (b Buffer) Len() int { return len(b.b) }

// get carves size bytes (rounded up to pages), zeroed.
func (p *pool) get(size int) (Buffer, error) {
	if size <= 0 {
		return Buffer{}, fmt.Errorf("nvme: buffer size %d must be positive", size)
	}
	size = (size + pageSize - 1) &^ (pageSize - 1)
	p.mu.Lock()
	iova, err := p.parts.Reserve(uint64(size))
	p.mu.Unlock()
	if err != nil {
		return Buffer{}, fmt.Errorf("%w: %d bytes wanted: %v", ErrNoBuffers, size, err)
	}
	off := iova - p.base
	b := p.buf.Bytes()[off : off+uint64(size) : off+uint64(size)]
	clear(b)
	return Buffer{b: b, iova: iova}, nil
}

func (p *pool) put(b Buffer) error {
	if len(b.b) == 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.parts.Release(b.iova, uint64(len(b.b)))
}

func (p *pool) close() error {
	err := p.mapper.Unmap(p.base, uint64(p.buf.Len()))
	if cerr := p.buf.Close(); err == nil {
		err = cerr
	}
	return err
}
