package vfio

import (
	"errors"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/dma"
	"github.com/vfioctl/vfioctl/uapi"
)

// SPAPRMapper is the dma.Mapper of a SPAPR TCE v2 container for code
// written against dma.Mapper: Map registers the system pages holding the
// memory (VFIO_IOMMU_SPAPR_REGISTER_MEMORY) before mapping them, and Unmap
// unregisters them once nothing maps them any more, as QEMU registers
// guest RAM before it maps it. Memory the caller registered itself
// through the same container (SPAPR.RegisterMemory) is mapped as it is and left
// registered; pages that overlap a registration made otherwise are
// refused (EINVAL), never mapped through it.
//
// Unregistering on the last unmap matters: a registration keeps its pages
// pinned, and memory freed and reused at the same address would otherwise
// be translated to the old pages. Map and Unmap allocate only when more
// mappings are live than ever before.
type SPAPRMapper struct {
	s    *SPAPR
	mu   sync.Mutex
	live []spaprMapping
}

// spaprMapping is one Map: its IOVAs, the registration it uses (whole
// system pages), how much of it is still mapped, and whether this mapper
// registered it.
type spaprMapping struct {
	iova, size uint64
	reg        uapi.Pointer // the first registered page
	regLen     uint64
	mapped     uint64
	owner      bool
}

// NewSPAPRMapper is the mapper of a SPAPR TCE v2 container.
func NewSPAPRMapper(s *SPAPR) (*SPAPRMapper, error) {
	if err := s.require("SPAPR mapper", SPAPRTCEv2); err != nil {
		return nil, err
	}
	return &SPAPRMapper{s: s}, nil
}

// SPAPR is the container the mapper programs.
func (m *SPAPRMapper) SPAPR() *SPAPR { return m.s }

// Map registers (unless already registered) and maps mem at iova.
func (m *SPAPRMapper) Map(iova uint64, mem []byte, perm dma.Perm) error {
	if len(mem) == 0 {
		return m.s.Map(iova, mem, perm) // the container's own error
	}
	reg, regLen := uapi.PageSpan(mem, uintptr(unix.Getpagesize()))
	vaddr := uint64(uapi.SlicePointer(mem).Addr())
	m.mu.Lock()
	defer m.mu.Unlock()
	// Pages this mapper or the caller (Container.RegisterMemory) already
	// registered are mapped as they are. Any other registration refusal is
	// an error: mapping over a registration nobody here knows of could
	// translate to pages freed since (a registration pins its pages).
	owner := false
	if !m.registered(reg, regLen) && !m.s.registeredCovers(vaddr, vaddr+uint64(len(mem))-1) {
		if err := m.s.registerSpan(opRegister, reg, regLen); err != nil {
			return err
		}
		owner = true
	}
	if err := m.s.Map(iova, mem, perm); err != nil {
		if owner {
			m.s.registerSpan(opUnregister, reg, regLen)
		}
		return err
	}
	m.live = append(m.live, spaprMapping{iova: iova, size: uint64(len(mem)), reg: reg, regLen: regLen, mapped: uint64(len(mem)), owner: owner})
	return nil
}

// registered: a live mapping's registration holds exactly these pages.
func (m *SPAPRMapper) registered(start uapi.Pointer, n uint64) bool {
	for _, l := range m.live {
		if l.reg == start && l.regLen == n {
			return true
		}
	}
	return false
}

// Unmap unmaps [iova, iova+size), which must lie inside one Map, and
// unregisters its pages when nothing maps them any more.
func (m *SPAPRMapper) Unmap(iova, size uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	i := -1
	for j, l := range m.live {
		if iova >= l.iova && size <= l.size && iova-l.iova <= l.size-size {
			i = j
			break
		}
	}
	if i < 0 {
		return m.s.c.dmaCall(opUnmapDMA, iova, size, nil).Refuse(unix.ENOENT, "not inside any mapping of this mapper")
	}
	if err := m.s.Unmap(iova, size); err != nil {
		return err
	}
	l := &m.live[i]
	if l.mapped -= min(size, l.mapped); l.mapped > 0 {
		return nil
	}
	done := *l
	m.live[i] = m.live[len(m.live)-1]
	m.live = m.live[:len(m.live)-1]
	return m.release(done)
}

// release unregisters the pages of a finished mapping, or hands their
// ownership to another live mapping that uses them.
func (m *SPAPRMapper) release(done spaprMapping) error {
	if !done.owner {
		return nil
	}
	for j := range m.live {
		if m.live[j].reg == done.reg && m.live[j].regLen == done.regLen {
			m.live[j].owner = true
			return nil
		}
	}
	return m.s.registerSpan(opUnregister, done.reg, done.regLen)
}

// UnmapAll clears every window and unregisters what this mapper
// registered. It returns the bytes this mapper had mapped (the kernel
// does not count them).
func (m *SPAPRMapper) UnmapAll() (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.s.UnmapAll(); err != nil {
		return 0, err
	}
	var n uint64
	var errs []error
	for len(m.live) > 0 {
		done := m.live[len(m.live)-1]
		m.live = m.live[:len(m.live)-1]
		n += done.mapped
		errs = append(errs, m.release(done))
	}
	return n, errors.Join(errs...)
}

// IOVARanges are the container's windows.
func (m *SPAPRMapper) IOVARanges() ([]dma.Range, error) { return m.s.IOVARanges() }

// Alignment is the largest TCE page size of the windows.
func (m *SPAPRMapper) Alignment() (uint64, error) { return m.s.Alignment() }

var _ dma.Mapper = (*SPAPRMapper)(nil)
