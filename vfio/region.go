package vfio

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/uapi"
)

// RegionIndex is a VFIO region index: for vfio-pci BAR0Region to
// BAR0Region+5, ROMRegion, ConfigRegion, VGARegion, then device-specific
// regions.
type RegionIndex uint32

// PCI region indexes of vfio-pci.
const (
	BAR0Region   RegionIndex = uapi.VFIO_PCI_BAR0_REGION_INDEX
	ROMRegion    RegionIndex = uapi.VFIO_PCI_ROM_REGION_INDEX
	ConfigRegion RegionIndex = uapi.VFIO_PCI_CONFIG_REGION_INDEX
	VGARegion    RegionIndex = uapi.VFIO_PCI_VGA_REGION_INDEX
)

// Region is one VFIO_DEVICE_GET_REGION_INFO region with its caps decoded.
type Region struct {
	dev    *Device
	Index  RegionIndex
	Size   uint64
	Offset uint64 // in the device fd
	Flags  uint32 // uapi.VFIO_REGION_INFO_FLAG_*
	// SparseAreas, when set, are the only mmap-able parts
	// (VFIO_REGION_INFO_CAP_SPARSE_MMAP).
	SparseAreas []SparseArea
	// Type and Subtype identify a device-specific region
	// (VFIO_REGION_INFO_CAP_TYPE); zero for the standard ones.
	Type, Subtype uint32
	// MSIXMappable: the MSI-X table may be mmap-ed with the rest of its BAR
	// (VFIO_REGION_INFO_CAP_MSIX_MAPPABLE).
	MSIXMappable bool
	Caps         []uapi.Cap
}

// SparseArea is an mmap-able part of a region: Size bytes at Offset in it.
type SparseArea struct {
	Offset, Size uint64
}

func (r *Region) Readable() bool { return r.Flags&uapi.VFIO_REGION_INFO_FLAG_READ != 0 }
func (r *Region) Writable() bool { return r.Flags&uapi.VFIO_REGION_INFO_FLAG_WRITE != 0 }
func (r *Region) Mappable() bool { return r.Flags&uapi.VFIO_REGION_INFO_FLAG_MMAP != 0 }

// Region is VFIO_DEVICE_GET_REGION_INFO for index i.
func (d *Device) Region(i RegionIndex) (*Region, error) {
	if n := d.Info().NumRegions; uint32(i) >= n {
		return nil, kernel.Call{Op: "VFIO_DEVICE_GET_REGION_INFO", Object: d.Name(), Args: fmt.Sprintf("index %d", i)}.Refuse(unix.EINVAL, fmt.Sprintf("the device has regions 0 to %d", int(n)-1))
	}
	return d.region(i)
}

// region asks for any index, also one beyond GET_INFO's count: a display
// plane's region (PlaneRegion) may lie there.
func (d *Device) region(i RegionIndex) (*Region, error) {
	hdr := uint32(unsafe.Sizeof(uapi.VfioRegionInfo{}))
	buf, err := growIoctl(hdr, func(b []byte) error {
		(*uapi.VfioRegionInfo)(unsafe.Pointer(&b[0])).Index = uint32(i)
		return d.fd.Ioctl(kernel.Call{Op: "VFIO_DEVICE_GET_REGION_INFO", Args: fmt.Sprintf("index %d", i)}, func(fd int) error { return uapi.IoctlVfioDeviceGetRegionInfo(fd, b) })
	})
	if err != nil {
		return nil, err
	}
	raw, err := uapi.Decode[uapi.VfioRegionInfo](buf)
	if err != nil {
		return nil, err
	}
	r := &Region{dev: d, Index: RegionIndex(raw.Index), Size: raw.Size, Offset: raw.Offset, Flags: raw.Flags}
	if raw.Flags&uapi.VFIO_REGION_INFO_FLAG_CAPS == 0 {
		return r, nil
	}
	if r.Caps, err = uapi.Caps(buf, raw.CapOffset, hdr); err != nil {
		return nil, kernel.Call{Op: "VFIO_DEVICE_GET_REGION_INFO", Object: d.Name(), Args: fmt.Sprintf("index %d", i)}.Fail(err)
	}
	for _, c := range r.Caps {
		switch c.ID {
		case uapi.VFIO_REGION_INFO_CAP_SPARSE_MMAP:
			areas, err := uapi.SparseMmapAreas(c)
			if err != nil {
				return nil, err
			}
			for _, a := range areas {
				r.SparseAreas = append(r.SparseAreas, SparseArea{Offset: a.Offset, Size: a.Size})
			}
		case uapi.VFIO_REGION_INFO_CAP_TYPE:
			t, err := uapi.CapAs[uapi.VfioRegionInfoCapType](c)
			if err != nil {
				return nil, err
			}
			r.Type, r.Subtype = t.Type, t.Subtype
		case uapi.VFIO_REGION_INFO_CAP_MSIX_MAPPABLE:
			r.MSIXMappable = true
		}
	}
	return r, nil
}

// Regions lists the device's regions; indexes the device does not
// implement (EINVAL, e.g. VGA on most devices) are left out.
func (d *Device) Regions() ([]*Region, error) {
	var out []*Region
	for i := RegionIndex(0); uint32(i) < d.Info().NumRegions; i++ {
		r, err := d.Region(i)
		if errors.Is(err, unix.EINVAL) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// within reports whether [off, off+n) lies inside [0, size), compared
// without a sum that could wrap.
func within(off, n, size uint64) bool { return n <= size && off <= size-n }

func (r *Region) check(op string, off int64, n int) error {
	if off < 0 || n < 0 || !within(uint64(off), uint64(n), r.Size) {
		return kernel.Call{Op: op, Object: r.dev.Name(), Args: fmt.Sprintf("region %d offset %#x length %d", r.Index, off, n)}.Refuse(unix.EINVAL, fmt.Sprintf("the region is %#x bytes", r.Size))
	}
	return nil
}

// ReadAt reads from the region through the device fd (pread).
func (r *Region) ReadAt(p []byte, off int64) (int, error) {
	if !r.Readable() {
		return 0, kernel.Call{Op: "read", Object: r.dev.Name(), Args: fmt.Sprintf("region %d", r.Index)}.Refuse(unix.EACCES, "region is not readable")
	}
	if err := r.check("read", off, len(p)); err != nil {
		return 0, err
	}
	var n int
	err := r.dev.fd.Do(func(fd int) (err error) {
		n, err = unix.Pread(fd, p, int64(r.Offset)+off)
		return err
	})
	if err != nil {
		return n, kernel.Call{Op: "read", Object: r.dev.Name(), Args: fmt.Sprintf("region %d offset %#x", r.Index, off)}.Fail(err)
	}
	return n, nil
}

// WriteAt writes to the region through the device fd (pwrite).
func (r *Region) WriteAt(p []byte, off int64) (int, error) {
	if !r.Writable() {
		return 0, kernel.Call{Op: "write", Object: r.dev.Name(), Args: fmt.Sprintf("region %d", r.Index)}.Refuse(unix.EACCES, "region is not writable")
	}
	if err := r.check("write", off, len(p)); err != nil {
		return 0, err
	}
	var n int
	err := r.dev.fd.Do(func(fd int) (err error) {
		n, err = unix.Pwrite(fd, p, int64(r.Offset)+off)
		return err
	})
	if err != nil {
		return n, kernel.Call{Op: "write", Object: r.dev.Name(), Args: fmt.Sprintf("region %d offset %#x", r.Index, off)}.Fail(err)
	}
	return n, nil
}

// Map mmaps the whole region (it must be mmap-able and, if it has sparse
// areas, be mapped by area with MapRange).
func (r *Region) Map() (*MMIO, error) { return r.MapRange(0, r.Size) }

// MapRange mmaps [off, off+size) of the region.
func (r *Region) MapRange(off, size uint64) (*MMIO, error) {
	if !r.Mappable() {
		return nil, kernel.Call{Op: "mmap", Object: r.dev.Name(), Args: fmt.Sprintf("region %d", r.Index)}.Refuse(unix.EINVAL, "region is not mmap-able; use ReadAt/WriteAt")
	}
	if size == 0 || !within(off, size, r.Size) {
		return nil, kernel.Call{Op: "mmap", Object: r.dev.Name(), Args: fmt.Sprintf("region %d offset %#x size %#x", r.Index, off, size)}.Refuse(unix.EINVAL, fmt.Sprintf("the region is %#x bytes", r.Size))
	}
	prot := 0
	if r.Readable() {
		prot |= unix.PROT_READ
	}
	if r.Writable() {
		prot |= unix.PROT_WRITE
	}
	var mem []byte
	err := r.dev.fd.Do(func(fd int) (err error) {
		mem, err = unix.Mmap(fd, int64(r.Offset+off), int(size), prot, unix.MAP_SHARED)
		return err
	})
	if err != nil {
		return nil, kernel.Call{Op: "mmap", Object: r.dev.Name(), Args: fmt.Sprintf("region %d offset %#x size %#x", r.Index, off, size)}.Fail(err)
	}
	return &MMIO{mem: mem, name: fmt.Sprintf("%s region %d", r.dev.Name(), r.Index)}, nil
}
