package vfio

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/dma"
	"github.com/vfioctl/vfioctl/uapi"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// The SPAPR TCE IOMMU of IBM POWER (pSeries guests and PowerNV hosts) is
// VFIO's other container model: DMA goes through windows of translation
// control entries (TCEs) instead of one address space. v1 pins pages on
// each map and is switched on with Enable; v2 maps only memory registered
// beforehand (RegisterMemory) and can create dynamic DMA windows (DDW)
// beside the default 32-bit one (CreateWindow).
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

// spaprState is what the kernel does not report about a SPAPR container:
// the windows created and whether the default one was removed.
type spaprState struct {
	mu             sync.Mutex
	created        []Window
	defaultRemoved bool
	registered     []dma.Range // RegisterMemory's, by virtual address
}

// requireModel refuses op (EINVAL) unless the container's model is one of
// models, before the kernel is asked.
func (c *Container) requireModel(op string, models ...IOMMUType) error {
	t := c.IOMMU()
	if slices.Contains(models, t) {
		return nil
	}
	return &vfioerr.OpError{Op: op, Object: c.fd.Name(), Err: unix.EINVAL,
		Hint: fmt.Sprintf("needs a %v container; this one is %s (SetIOMMU first)", models, t)}
}

// SPAPRInfo is VFIO_IOMMU_SPAPR_TCE_GET_INFO (a group must be attached).
func (c *Container) SPAPRInfo() (*SPAPRInfo, error) {
	if err := c.requireModel("VFIO_IOMMU_SPAPR_TCE_GET_INFO", SPAPRTCE, SPAPRTCEv2); err != nil {
		return nil, err
	}
	var in uapi.VfioIommuSpaprTceInfo // the helper sets argsz
	err := c.do("VFIO_IOMMU_SPAPR_TCE_GET_INFO", "", func(fd int) error { return uapi.IoctlVfioIommuSpaprTceGetInfo(fd, &in) })
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			err.(*vfioerr.OpError).Hint = spaprOtherMM
		}
		return nil, err
	}
	info := &SPAPRInfo{DMA32Window: dma.Range{Start: uint64(in.Dma32WindowStart), Last: uint64(in.Dma32WindowStart) + uint64(in.Dma32WindowSize) - 1}}
	if in.Flags&uapi.VFIO_IOMMU_SPAPR_INFO_DDW != 0 {
		info.DDW = &DDWInfo{PageSizes: in.Ddw.Pgsizes, MaxWindows: in.Ddw.MaxDynamicWindowsSupported, Levels: in.Ddw.Levels}
	}
	return info, nil
}

// Enable is VFIO_IOMMU_ENABLE, which a v1 container needs before it maps:
// it accounts the whole default window against RLIMIT_MEMLOCK.
func (c *Container) Enable() error {
	if err := c.requireModel("VFIO_IOMMU_ENABLE", SPAPRTCE); err != nil {
		return err
	}
	err := c.do("VFIO_IOMMU_ENABLE", "", func(fd int) error { _, err := uapi.IoctlVfioIommuEnable(fd); return err })
	if err != nil && errors.Is(err, unix.ENOMEM) {
		err.(*vfioerr.OpError).Hint = "the default window's size exceeds RLIMIT_MEMLOCK (v1 accounts it whole): raise it, or use SPAPR TCE v2"
	}
	return err
}

// Disable is VFIO_IOMMU_DISABLE (v1).
func (c *Container) Disable() error {
	if err := c.requireModel("VFIO_IOMMU_DISABLE", SPAPRTCE); err != nil {
		return err
	}
	return c.do("VFIO_IOMMU_DISABLE", "", func(fd int) error { _, err := uapi.IoctlVfioIommuDisable(fd); return err })
}

// RegisterMemory is VFIO_IOMMU_SPAPR_REGISTER_MEMORY (v2): it pins mem so
// that maps of it need no further pinning. mem must be whole system pages.
// Registering the same memory twice is EBUSY, memory overlapping a
// registration EINVAL.
func (c *Container) RegisterMemory(mem []byte) error {
	err := c.registration(opRegister, mem)
	if err == nil {
		c.spapr.mu.Lock()
		c.spapr.registered = append(c.spapr.registered, memRange(mem))
		c.spapr.mu.Unlock()
	}
	return err
}

// UnregisterMemory is VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY (v2): mem must be
// exactly a registration. Unmap it first: Linux 6.12 accepts the call
// while the memory is mapped, forgets the registration and keeps the
// pages pinned until the mappings go.
func (c *Container) UnregisterMemory(mem []byte) error {
	err := c.registration(opUnregister, mem)
	if err == nil {
		r := memRange(mem)
		c.spapr.mu.Lock()
		c.spapr.registered = slices.DeleteFunc(c.spapr.registered, func(x dma.Range) bool { return x == r })
		c.spapr.mu.Unlock()
	}
	return err
}

// memRange is the virtual address range of a non-empty mem.
func memRange(mem []byte) dma.Range {
	p := uint64(uintptr(unsafe.Pointer(&mem[0])))
	return dma.Range{Start: p, Last: p + uint64(len(mem)) - 1}
}

// hasRegistrations reports whether this process registered memory with
// the container (RegisterMemory) that it has not unregistered.
func (c *Container) hasRegistrations() bool {
	c.spapr.mu.Lock()
	defer c.spapr.mu.Unlock()
	return len(c.spapr.registered) > 0
}

// registeredCovers: a RegisterMemory of this container holds [start, last].
func (c *Container) registeredCovers(start, last uint64) bool {
	c.spapr.mu.Lock()
	defer c.spapr.mu.Unlock()
	for _, r := range c.spapr.registered {
		if r.Start <= start && last <= r.Last {
			return true
		}
	}
	return false
}

func (c *Container) registration(op string, mem []byte) error {
	if err := c.requireModel(op, SPAPRTCEv2); err != nil {
		return err
	}
	if len(mem) == 0 {
		return &vfioerr.OpError{Op: op, Object: c.fd.Name(), Err: unix.EINVAL, Hint: "empty buffer"}
	}
	return c.registerRange(op, memRange(mem).Start, uint64(len(mem)), mem)
}

// The two registration requests registerRange issues.
const (
	opRegister   = "VFIO_IOMMU_SPAPR_REGISTER_MEMORY"
	opUnregister = "VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY"
)

// registerRange issues op (opRegister or opUnregister) for [vaddr,
// vaddr+size); keep is the memory, kept alive across the call. The uapi
// helper is called directly, not through a function value: the compiler
// then keeps the request on the stack (through a function value it moved
// it to the heap under -d=checkptr, an allocation per call on the
// SPAPRMapper's map/unmap path).
func (c *Container) registerRange(op string, vaddr, size uint64, keep []byte) error {
	r := uapi.VfioIommuSpaprRegisterMemory{Vaddr: vaddr, Size: size}
	err := c.fd.Do(func(fd int) error {
		if op == opRegister {
			return uapi.IoctlVfioIommuSpaprRegisterMemory(fd, &r)
		}
		return uapi.IoctlVfioIommuSpaprUnregisterMemory(fd, &r)
	})
	runtime.KeepAlive(keep)
	if err == nil {
		return nil
	}
	e := &vfioerr.OpError{Op: op, Object: c.fd.Name(), Args: fmt.Sprintf("vaddr=%#x size=%#x", vaddr, size), Err: err}
	switch {
	case errors.Is(err, unix.EINVAL):
		e.Hint = fmt.Sprintf("the memory must be whole %d-byte system pages, and not overlap a registration", unix.Getpagesize())
	case errors.Is(err, unix.EBUSY) && op == opRegister:
		e.Hint = "already registered on this container"
	case errors.Is(err, unix.EBUSY):
		e.Hint = "still mapped: unmap it first"
	case errors.Is(err, unix.ENOENT):
		e.Hint = "not a registration of this container (unregister exactly what was registered)"
	case errors.Is(err, unix.ENOMEM):
		e.Hint = "pinning would exceed RLIMIT_MEMLOCK: raise it (ulimit -l)"
	}
	return e
}

// CreateWindow is VFIO_IOMMU_SPAPR_TCE_CREATE (v2): a dynamic DMA window of
// size bytes with TCE pages of 1<<pageShift (one of DDWInfo.PageSizes) and
// a TCE table of levels levels (1 if 0). The kernel chooses where; the
// window is returned and from then on part of IOVARanges.
func (c *Container) CreateWindow(pageShift uint, size uint64, levels uint32) (Window, error) {
	if err := c.requireModel("VFIO_IOMMU_SPAPR_TCE_CREATE", SPAPRTCEv2); err != nil {
		return Window{}, err
	}
	if levels == 0 {
		levels = 1
	}
	cr := uapi.VfioIommuSpaprTceCreate{PageShift: uint32(pageShift), WindowSize: size, Levels: levels}
	args := fmt.Sprintf("page_shift=%d size=%#x levels=%d", pageShift, size, levels)
	if err := c.fd.Do(func(fd int) error { return uapi.IoctlVfioIommuSpaprTceCreate(fd, &cr) }); err != nil {
		e := &vfioerr.OpError{Op: "VFIO_IOMMU_SPAPR_TCE_CREATE", Object: c.fd.Name(), Args: args, Err: err}
		switch {
		case errors.Is(err, unix.ENOSPC):
			e.Hint = "every window the group supports exists (see SPAPRInfo DDW.MaxWindows)"
		case errors.Is(err, unix.EINVAL):
			e.Hint = "the page size must be one DDW offers and the size a power of two of whole pages"
		case errors.Is(err, unix.EPERM):
			e.Hint = "the platform refused the window (no DDW on this PHB?)"
		}
		return Window{}, e
	}
	w := Window{Range: dma.Range{Start: cr.StartAddr, Last: cr.StartAddr + size - 1}, PageShift: pageShift}
	c.spapr.mu.Lock()
	c.spapr.created = append(c.spapr.created, w)
	c.spapr.mu.Unlock()
	return w, nil
}

// RemoveWindow is VFIO_IOMMU_SPAPR_TCE_REMOVE (v2) of the window starting
// at start; the default window (start 0 on pSeries) may be removed too.
func (c *Container) RemoveWindow(start uint64) error {
	if err := c.requireModel("VFIO_IOMMU_SPAPR_TCE_REMOVE", SPAPRTCEv2); err != nil {
		return err
	}
	rm := uapi.VfioIommuSpaprTceRemove{StartAddr: start}
	if err := c.fd.Do(func(fd int) error { return uapi.IoctlVfioIommuSpaprTceRemove(fd, &rm) }); err != nil {
		e := &vfioerr.OpError{Op: "VFIO_IOMMU_SPAPR_TCE_REMOVE", Object: c.fd.Name(), Args: fmt.Sprintf("start=%#x", start), Err: err}
		if errors.Is(err, unix.EINVAL) {
			e.Hint = "no window starts there"
		}
		return e
	}
	c.spapr.mu.Lock()
	defer c.spapr.mu.Unlock()
	for i, w := range c.spapr.created {
		if w.Start == start {
			c.spapr.created = slices.Delete(c.spapr.created, i, i+1)
			return nil
		}
	}
	c.spapr.defaultRemoved = true
	return nil
}

// Windows are the DMA windows of a SPAPR container: the default one
// (unless removed) and those CreateWindow made, by address.
func (c *Container) Windows() ([]Window, error) {
	info, err := c.SPAPRInfo()
	if err != nil {
		return nil, err
	}
	c.spapr.mu.Lock()
	defer c.spapr.mu.Unlock()
	var ws []Window
	if !c.spapr.defaultRemoved && info.DMA32Window.Last >= info.DMA32Window.Start {
		ws = append(ws, Window{Range: info.DMA32Window, PageShift: spaprDefaultPageShift, Default: true})
	}
	ws = append(ws, c.spapr.created...)
	slices.SortFunc(ws, func(a, b Window) int {
		if a.Start < b.Start {
			return -1
		}
		return 1
	})
	return ws, nil
}

// spaprRanges and spaprAlignment are IOVARanges and Alignment of a SPAPR
// container: the windows, and the largest TCE page among them (so that an
// allocator's IOVAs suit every window).
func (c *Container) spaprRanges() ([]dma.Range, error) {
	ws, err := c.Windows()
	if err != nil {
		return nil, err
	}
	rs := make([]dma.Range, len(ws))
	for i, w := range ws {
		rs[i] = w.Range
	}
	return rs, nil
}

func (c *Container) spaprAlignment() (uint64, error) {
	ws, err := c.Windows()
	if err != nil {
		return 0, err
	}
	var align uint64 = 1 << spaprDefaultPageShift
	for _, w := range ws {
		align = max(align, 1<<w.PageShift)
	}
	return align, nil
}

// spaprUnmapAll clears every window: SPAPR has no VFIO_DMA_UNMAP_FLAG_ALL
// and does not count what it unmaps.
func (c *Container) spaprUnmapAll() error {
	ws, err := c.Windows()
	if err != nil {
		return err
	}
	for _, w := range ws {
		err := c.Unmap(w.Start, w.Last-w.Start+1)
		if errors.Is(err, unix.EPERM) {
			return nil // a v2 container with nothing ever registered, or a v1 not enabled: nothing is mapped
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// spaprOtherMM explains EPERM from a SPAPR container another process used first.
const spaprOtherMM = "the container belongs to the process that first registered, mapped or created a window through it (the kernel binds it to that process's memory): only that process may use it"

// errTCEParam is how a SPAPR TCE container refuses a map or unmap whose
// IOVA or address fails its parameter check: the ioctl returns 1 with no
// errno (iommu_tce_put_param_check is a boolean macro that Linux 6.12
// passes on as the result). It matches unix.EINVAL.
var errTCEParam error = tceParamError{}

type tceParamError struct{}

func (tceParamError) Error() string { return "invalid argument (the ioctl returned 1)" }
func (tceParamError) Unwrap() error { return unix.EINVAL }

const tceParamHint = "the SPAPR TCE parameter check refused it: the iova must be aligned to the window's TCE page size and inside the window"

// positiveRefusal turns a positive ioctl result without errno into
// errTCEParam (type1 and iommufd return 0 on success).
func positiveRefusal(r int, err error) error {
	if err == nil && r > 0 {
		return errTCEParam
	}
	return err
}

// spaprMapHint explains a failed map on a SPAPR container, given whether
// it holds a registration (RegisterMemory) of this process.
func spaprMapHint(t IOMMUType, err error, registered bool) string {
	switch {
	case errors.Is(err, errTCEParam):
		return tceParamHint
	case errors.Is(err, unix.ENXIO):
		return "the iova is outside every DMA window (see Windows)"
	case errors.Is(err, unix.ENOMEM):
		return "pinning, or the window's TCE table the first map creates (8 bytes per TCE: 2 MiB for 1 GiB of 4 KiB pages), would exceed RLIMIT_MEMLOCK: raise it (ulimit -l)"
	case errors.Is(err, unix.EPERM) && t == SPAPRTCEv2 && !registered:
		return "nothing is registered yet: a v2 container maps only registered memory (RegisterMemory, or the Mapper of SPAPRMapper)"
	case errors.Is(err, unix.EPERM) && t == SPAPRTCEv2:
		return "the memory is registered, so the kernel refused the container itself: " + spaprOtherMM + "; or, on pSeries, a second group attached to it refuses the window the first map creates (each PE has DMA windows of its own: one group per container)"
	case errors.Is(err, unix.EPERM):
		return "the v1 container is not enabled (Enable)"
	case errors.Is(err, unix.EINVAL) && t == SPAPRTCEv2:
		return "the memory must be registered first (RegisterMemory), and iova, size and address aligned to the window's TCE page size"
	case errors.Is(err, unix.EINVAL):
		return "iova, size and address must be aligned to the window's TCE page size"
	}
	return ""
}
