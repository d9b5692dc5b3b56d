package vfio

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/dma"
	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/uapi"
)

// The SPAPR TCE IOMMU of IBM POWER (pSeries guests and PowerNV hosts) is
// VFIO's other container model: DMA goes through windows of translation
// control entries (TCEs) instead of one address space. v1 pins pages on
// each map and is switched on with Enable; v2 maps only memory registered
// beforehand (RegisterMemory) and can create dynamic DMA windows (DDW)
// beside the default 32-bit one (CreateWindow). What only POWER has is
// reached through Container.SPAPR, so a type1 container carries none of it.
const (
	SPAPRTCE   IOMMUType = uapi.VFIO_SPAPR_TCE_IOMMU
	SPAPRTCEv2 IOMMUType = uapi.VFIO_SPAPR_TCE_v2_IOMMU
)

// spaprDefaultPageShift is the TCE page size of the default 32-bit window,
// which the kernel creates with 4 KiB pages (tce_iommu_create_default_window).
const spaprDefaultPageShift = 12

// IsSPAPR reports whether t is one of the SPAPR TCE models.
func (t IOMMUType) IsSPAPR() bool { return t == SPAPRTCE || t == SPAPRTCEv2 }

// SPAPRInfo is VFIO_IOMMU_SPAPR_TCE_GET_INFO, decoded.
type SPAPRInfo struct {
	// DMA32Window is the default window (below 4 GiB): created on the
	// first map or window operation of a v2 container unless removed.
	DMA32Window dma.Range
	// DDW describes the dynamic DMA windows the group supports; nil
	// when it supports none, and always on v1.
	DDW *DDWInfo
}

// DDWInfo is what VFIO_IOMMU_SPAPR_INFO_DDW reports.
type DDWInfo struct {
	PageSizes  uint64 // bitmap of the TCE page sizes a window may use
	MaxWindows uint32 // windows the group supports in all, the default one included
	Levels     uint32 // the most levels a window's TCE table may have
}

// Window is a SPAPR DMA window: the IOVAs it translates and its TCE page
// size (maps must be aligned to it).
type Window struct {
	dma.Range
	PageShift uint
	// Default is the 32-bit window every group starts with.
	Default bool
}

// SPAPR is a container whose model is SPAPR TCE, with the calls only that
// model has; Container.SPAPR returns it. It also keeps what the kernel does
// not report: the windows created, whether the default one was removed,
// and the memory registered. Its Map, Unmap, UnmapAll, IOVARanges and
// Alignment are the container's under this model.
type SPAPR struct {
	c              *Container
	t              IOMMUType // SPAPRTCE or SPAPRTCEv2
	mu             sync.Mutex
	created        []Window
	defaultRemoved bool
	registered     []dma.Range // RegisterMemory's, by virtual address
}

func newSPAPR(c *Container, t IOMMUType) *SPAPR { return &SPAPR{c: c, t: t} }

// SPAPR is the container's SPAPR TCE side; EINVAL unless SetIOMMU chose
// SPAPRTCE or SPAPRTCEv2.
func (c *Container) SPAPR() (*SPAPR, error) {
	m := c.model.Load()
	if s, ok := m.mapper.(*SPAPR); ok {
		return s, nil
	}
	return nil, kernel.Call{Op: "SPAPR TCE", Object: c.Name()}.Refuse(unix.EINVAL, fmt.Sprintf("the container's model is %s, not SPAPR TCE", m.t))
}

// Container is the container s belongs to.
func (s *SPAPR) Container() *Container { return s.c }

// Version is the model: SPAPRTCE (v1) or SPAPRTCEv2.
func (s *SPAPR) Version() IOMMUType { return s.t }

// require refuses op (EINVAL) on a container of the other version, before
// the kernel is asked.
func (s *SPAPR) require(op string, v IOMMUType) error {
	if s.t == v {
		return nil
	}
	return kernel.Call{Op: op, Object: s.c.Name()}.Refuse(unix.EINVAL, fmt.Sprintf("needs a %s container; this one is %s", v, s.t))
}

// call issues one SPAPR ioctl on the container.
func (s *SPAPR) call(c kernel.Call, fn func(fd int) error) error { return s.c.fd.Ioctl(c, fn) }

// Info is VFIO_IOMMU_SPAPR_TCE_GET_INFO (a group must be attached).
func (s *SPAPR) Info() (*SPAPRInfo, error) {
	var in uapi.VfioIommuSpaprTceInfo // the helper sets argsz
	err := s.call(kernel.Call{Op: "VFIO_IOMMU_SPAPR_TCE_GET_INFO", Hints: otherMMHints}, func(fd int) error { return uapi.IoctlVfioIommuSpaprTceGetInfo(fd, &in) })
	if err != nil {
		return nil, err
	}
	info := &SPAPRInfo{DMA32Window: dma.Range{Start: uint64(in.Dma32WindowStart), Last: uint64(in.Dma32WindowStart) + uint64(in.Dma32WindowSize) - 1}}
	if in.Flags&uapi.VFIO_IOMMU_SPAPR_INFO_DDW != 0 {
		info.DDW = &DDWInfo{PageSizes: in.Ddw.Pgsizes, MaxWindows: in.Ddw.MaxDynamicWindowsSupported, Levels: in.Ddw.Levels}
	}
	return info, nil
}

// otherMMHints explain EPERM from a SPAPR container another process used first.
var otherMMHints = kernel.Hints{unix.EPERM: kernel.Say(spaprOtherMM)}

// Enable is VFIO_IOMMU_ENABLE, which a v1 container needs before it maps:
// it accounts the whole default window against RLIMIT_MEMLOCK.
func (s *SPAPR) Enable() error {
	if err := s.require("VFIO_IOMMU_ENABLE", SPAPRTCE); err != nil {
		return err
	}
	return s.call(kernel.Call{Op: "VFIO_IOMMU_ENABLE", Hints: enableHints}, func(fd int) error { _, err := uapi.IoctlVfioIommuEnable(fd); return err })
}

var enableHints = kernel.Hints{
	unix.ENOMEM: kernel.Say("the default window's size exceeds RLIMIT_MEMLOCK (v1 accounts it whole): raise it, or use SPAPR TCE v2"),
}

// Disable is VFIO_IOMMU_DISABLE (v1).
func (s *SPAPR) Disable() error {
	if err := s.require("VFIO_IOMMU_DISABLE", SPAPRTCE); err != nil {
		return err
	}
	return s.call(kernel.Call{Op: "VFIO_IOMMU_DISABLE"}, func(fd int) error { _, err := uapi.IoctlVfioIommuDisable(fd); return err })
}

// RegisterMemory is VFIO_IOMMU_SPAPR_REGISTER_MEMORY (v2): it pins mem so
// that maps of it need no further pinning. mem must be whole system pages.
// Registering the same memory twice is EBUSY, memory overlapping a
// registration EINVAL.
func (s *SPAPR) RegisterMemory(mem []byte) error {
	err := s.registration(opRegister, mem)
	if err == nil {
		s.mu.Lock()
		s.registered = append(s.registered, memRange(mem))
		s.mu.Unlock()
	}
	return err
}

// UnregisterMemory is VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY (v2): mem must be
// exactly a registration. Unmap it first: Linux 6.12 accepts the call
// while the memory is mapped, forgets the registration and keeps the
// pages pinned until the mappings go.
func (s *SPAPR) UnregisterMemory(mem []byte) error {
	err := s.registration(opUnregister, mem)
	if err == nil {
		r := memRange(mem)
		s.mu.Lock()
		s.registered = slices.DeleteFunc(s.registered, func(x dma.Range) bool { return x == r })
		s.mu.Unlock()
	}
	return err
}

// memRange is the virtual address range of a non-empty mem.
func memRange(mem []byte) dma.Range {
	p := uint64(uapi.SlicePointer(mem).Addr())
	return dma.Range{Start: p, Last: p + uint64(len(mem)) - 1}
}

// hasRegistrations reports whether this process registered memory with
// the container (RegisterMemory) that it has not unregistered.
func (s *SPAPR) hasRegistrations() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.registered) > 0
}

// registeredCovers: a RegisterMemory of this container holds [start, last].
func (s *SPAPR) registeredCovers(start, last uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.registered {
		if r.Start <= start && last <= r.Last {
			return true
		}
	}
	return false
}

func (s *SPAPR) registration(op string, mem []byte) error {
	if err := s.require(op, SPAPRTCEv2); err != nil {
		return err
	}
	if len(mem) == 0 {
		return kernel.Call{Op: op, Object: s.c.Name()}.Refuse(unix.EINVAL, "empty buffer")
	}
	return s.registerSpan(op, uapi.SlicePointer(mem), uint64(len(mem)))
}

// The two registration requests registerPages issues.
const (
	opRegister   = "VFIO_IOMMU_SPAPR_REGISTER_MEMORY"
	opUnregister = "VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY"
)

// registerSpan issues op (opRegister or opUnregister) for size bytes at
// vaddr. The uapi
// helper is called directly, not through a function value: the compiler
// then keeps the request on the stack (through a function value it moved
// it to the heap under -d=checkptr, an allocation per call on the
// SPAPRMapper's map/unmap path).
func (s *SPAPR) registerSpan(op string, vaddr uapi.Pointer, size uint64) error {
	r := uapi.VfioIommuSpaprRegisterMemory{Vaddr: vaddr, Size: size}
	err := s.c.fd.Do(func(fd int) error {
		if op == opRegister {
			return uapi.IoctlVfioIommuSpaprRegisterMemory(fd, &r)
		}
		return uapi.IoctlVfioIommuSpaprUnregisterMemory(fd, &r)
	})
	if err != nil {
		return kernel.Call{Op: op, Object: s.c.Name(), Args: fmt.Sprintf("vaddr=%#x size=%#x", r.Vaddr.Addr(), r.Size), Hints: registerHints(op)}.Fail(err)
	}
	return nil
}

// registerHints explain the errnos of a registration request.
func registerHints(op string) kernel.Hints {
	h := kernel.Hints{
		unix.EINVAL: func() string {
			return fmt.Sprintf("the memory must be whole %d-byte system pages, and not overlap a registration", unix.Getpagesize())
		},
		unix.EBUSY:  kernel.Say("still mapped: unmap it first"),
		unix.ENOENT: kernel.Say("not a registration of this container (unregister exactly what was registered)"),
		unix.ENOMEM: kernel.Say("pinning would exceed RLIMIT_MEMLOCK: raise it (ulimit -l)"),
	}
	if op == opRegister {
		h[unix.EBUSY] = kernel.Say("already registered on this container")
	}
	return h
}

// CreateWindow is VFIO_IOMMU_SPAPR_TCE_CREATE (v2): a dynamic DMA window of
// size bytes with TCE pages of 1<<pageShift (one of DDWInfo.PageSizes) and
// a TCE table of levels levels (1 if 0). The kernel chooses where; the
// window is returned and from then on part of IOVARanges.
func (s *SPAPR) CreateWindow(pageShift uint, size uint64, levels uint32) (Window, error) {
	if err := s.require("VFIO_IOMMU_SPAPR_TCE_CREATE", SPAPRTCEv2); err != nil {
		return Window{}, err
	}
	if levels == 0 {
		levels = 1
	}
	cr := uapi.VfioIommuSpaprTceCreate{PageShift: uint32(pageShift), WindowSize: size, Levels: levels}
	err := s.call(kernel.Call{Op: "VFIO_IOMMU_SPAPR_TCE_CREATE", Args: fmt.Sprintf("page_shift=%d size=%#x levels=%d", pageShift, size, levels), Hints: createWindowHints},
		func(fd int) error { return uapi.IoctlVfioIommuSpaprTceCreate(fd, &cr) })
	if err != nil {
		return Window{}, err
	}
	w := Window{Range: dma.Range{Start: cr.StartAddr, Last: cr.StartAddr + size - 1}, PageShift: pageShift}
	s.mu.Lock()
	s.created = append(s.created, w)
	s.mu.Unlock()
	return w, nil
}

var createWindowHints = kernel.Hints{
	unix.ENOSPC: kernel.Say("every window the group supports exists (see SPAPRInfo DDW.MaxWindows)"),
	unix.EINVAL: kernel.Say("the page size must be one DDW offers and the size a power of two of whole pages"),
	unix.EPERM:  kernel.Say("the platform refused the window (no DDW on this PHB?)"),
}

// RemoveWindow is VFIO_IOMMU_SPAPR_TCE_REMOVE (v2) of the window starting
// at start; the default window (start 0 on pSeries) may be removed too.
func (s *SPAPR) RemoveWindow(start uint64) error {
	if err := s.require("VFIO_IOMMU_SPAPR_TCE_REMOVE", SPAPRTCEv2); err != nil {
		return err
	}
	rm := uapi.VfioIommuSpaprTceRemove{StartAddr: start}
	err := s.call(kernel.Call{Op: "VFIO_IOMMU_SPAPR_TCE_REMOVE", Args: fmt.Sprintf("start=%#x", start), Hints: removeWindowHints},
		func(fd int) error { return uapi.IoctlVfioIommuSpaprTceRemove(fd, &rm) })
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, w := range s.created {
		if w.Start == start {
			s.created = slices.Delete(s.created, i, i+1)
			return nil
		}
	}
	s.defaultRemoved = true
	return nil
}

var removeWindowHints = kernel.Hints{unix.EINVAL: kernel.Say("no window starts there")}

// Windows are the DMA windows of the container: the default one (unless
// removed) and those CreateWindow made, by address.
func (s *SPAPR) Windows() ([]Window, error) {
	info, err := s.Info()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var ws []Window
	if !s.defaultRemoved && info.DMA32Window.Last >= info.DMA32Window.Start {
		ws = append(ws, Window{Range: info.DMA32Window, PageShift: spaprDefaultPageShift, Default: true})
	}
	ws = append(ws, s.created...)
	slices.SortFunc(ws, func(a, b Window) int {
		if a.Start < b.Start {
			return -1
		}
		return 1
	})
	return ws, nil
}

// Map is VFIO_IOMMU_MAP_DMA under SPAPR TCE: v2 maps only registered
// memory (RegisterMemory, or a SPAPRMapper), v1 only once Enable'd.
func (s *SPAPR) Map(iova uint64, mem []byte, perm dma.Perm) error {
	if len(mem) == 0 {
		return s.c.dmaCall(opMapDMA, iova, 0, nil).Refuse(unix.EINVAL, "empty buffer")
	}
	if err := s.c.mapDMA(iova, mem, perm); err != nil {
		return s.c.dmaCall(opMapDMA, iova, uint64(len(mem)), s.mapHints()).Fail(err)
	}
	return nil
}

// Unmap clears whatever entries [iova, iova+size) holds, none included.
func (s *SPAPR) Unmap(iova, size uint64) error {
	if _, err := s.c.unmapDMA(iova, size, 0); err != nil {
		return s.c.dmaCall(opUnmapDMA, iova, size, unmapHints).Fail(err)
	}
	return nil
}

var unmapHints = kernel.Hints{unix.EINVAL: kernel.Say(tceParamHint)}

// UnmapAll clears every window: SPAPR has no VFIO_DMA_UNMAP_FLAG_ALL and
// does not count what it unmaps, so it returns 0.
func (s *SPAPR) UnmapAll() (uint64, error) {
	ws, err := s.Windows()
	if err != nil {
		return 0, err
	}
	for _, w := range ws {
		err := s.Unmap(w.Start, w.Last-w.Start+1)
		if errors.Is(err, unix.EPERM) {
			return 0, nil // a v2 container with nothing ever registered, or a v1 not enabled: nothing is mapped
		}
		if err != nil {
			return 0, err
		}
	}
	return 0, nil
}

// IOVARanges are the windows.
func (s *SPAPR) IOVARanges() ([]dma.Range, error) {
	ws, err := s.Windows()
	if err != nil {
		return nil, err
	}
	rs := make([]dma.Range, len(ws))
	for i, w := range ws {
		rs[i] = w.Range
	}
	return rs, nil
}

// Alignment is the largest TCE page among the windows, so that an
// allocator's IOVAs suit every window.
func (s *SPAPR) Alignment() (uint64, error) {
	ws, err := s.Windows()
	if err != nil {
		return 0, err
	}
	var align uint64 = 1 << spaprDefaultPageShift
	for _, w := range ws {
		align = max(align, 1<<w.PageShift)
	}
	return align, nil
}

var _ dma.Mapper = (*SPAPR)(nil)

// spaprOtherMM explains EPERM from a SPAPR container another process used first.
const spaprOtherMM = "the container belongs to the process that first registered, mapped or created a window through it (the kernel binds it to that process's memory): only that process may use it"

const tceParamHint = "the SPAPR TCE parameter check refused it: the iova must be aligned to the window's TCE page size and inside the window"

// mapHints explain a failed map, given the version and whether this
// process holds a registration (RegisterMemory) on the container.
func (s *SPAPR) mapHints() kernel.Hints {
	v2, registered := s.t == SPAPRTCEv2, s.hasRegistrations()
	h := kernel.Hints{
		unix.ENXIO:  kernel.Say("the iova is outside every DMA window (see Windows)"),
		unix.ENOMEM: kernel.Say("pinning, or the window's TCE table the first map creates (8 bytes per TCE: 2 MiB for 1 GiB of 4 KiB pages), would exceed RLIMIT_MEMLOCK: raise it (ulimit -l)"),
		unix.EPERM:  kernel.Say("the v1 container is not enabled (Enable)"),
		unix.EINVAL: kernel.Say("iova, size and address must be aligned to the window's TCE page size, and the iova inside a window"),
	}
	switch {
	case v2 && !registered:
		h[unix.EPERM] = kernel.Say("nothing is registered yet: a v2 container maps only registered memory (RegisterMemory, or a SPAPRMapper)")
	case v2:
		h[unix.EPERM] = kernel.Say("the memory is registered, so the kernel refused the container itself: " + spaprOtherMM + "; or, on pSeries, a second group attached to it refuses the window the first map creates (each PE has DMA windows of its own: one group per container)")
	}
	if v2 {
		h[unix.EINVAL] = kernel.Say("the memory must be registered first (RegisterMemory), and iova, size and address aligned to the window's TCE page size, the iova inside a window")
	}
	return h
}
