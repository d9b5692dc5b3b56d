package uapi

import (
	"encoding/binary"
	"fmt"
	"unsafe"
)

// Cap is one entry of a VFIO capability chain (struct vfio_info_cap_header
// followed by its body) as found in the buffer returned by
// VFIO_DEVICE_GET_INFO, VFIO_DEVICE_GET_REGION_INFO or VFIO_IOMMU_GET_INFO.
type Cap struct {
	ID      uint16
	Version uint16
	Offset  uint32 // of the header, from the start of the info buffer
	Data    []byte // from the header to the end of the buffer
}

// capHeaderSize is sizeof(struct vfio_info_cap_header).
const capHeaderSize = uint32(unsafe.Sizeof(VfioInfoCapHeader{}))

// Caps walks the capability chain of an info buffer whose cap_offset is
// first (0: no chain). Headers must lie wholly inside buf, after the fixed
// info struct (minOffset), and the chain may not loop; a malformed chain is
// an error, never a panic.
func Caps(buf []byte, first, minOffset uint32) ([]Cap, error) {
	var caps []Cap
	seen := map[uint32]bool{}
	for off := first; off != 0; {
		if off < minOffset {
			return caps, fmt.Errorf("capability at offset %d lies inside the info header (%d bytes)", off, minOffset)
		}
		if uint64(off)+uint64(capHeaderSize) > uint64(len(buf)) {
			return caps, fmt.Errorf("capability at offset %d runs past the %d-byte buffer", off, len(buf))
		}
		if off%4 != 0 {
			return caps, fmt.Errorf("capability at offset %d is not 4-byte aligned", off)
		}
		if seen[off] {
			return caps, fmt.Errorf("capability chain loops at offset %d", off)
		}
		seen[off] = true
		caps = append(caps, Cap{
			ID:      binary.NativeEndian.Uint16(buf[off:]),
			Version: binary.NativeEndian.Uint16(buf[off+2:]),
			Offset:  off,
			Data:    buf[off:],
		})
		off = binary.NativeEndian.Uint32(buf[off+4:])
	}
	return caps, nil
}

// Decode copies the start of b into a T (a struct of this package),
// checking that b holds one.
func Decode[T any](b []byte) (*T, error) {
	var t T
	n := int(unsafe.Sizeof(t))
	if len(b) < n {
		return nil, fmt.Errorf("%d bytes, %T needs %d", len(b), t, n)
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&t)), n), b)
	return &t, nil
}

// CapAs decodes a capability's fixed part into T (a struct of this package
// beginning with VfioInfoCapHeader), checking that the buffer holds it.
func CapAs[T any](c Cap) (*T, error) {
	t, err := Decode[T](c.Data)
	if err != nil {
		return nil, fmt.Errorf("capability %d at offset %d: %w", c.ID, c.Offset, err)
	}
	return t, nil
}

// CapArray decodes the flexible array of n elements of E that follows a
// capability's fixed part of hdr bytes, checking the bounds.
func CapArray[E any](c Cap, hdr uintptr, n uint32) ([]E, error) {
	var e E
	need := uint64(hdr) + uint64(n)*uint64(unsafe.Sizeof(e))
	if need > uint64(len(c.Data)) {
		return nil, fmt.Errorf("capability %d at offset %d: %d elements need %d bytes, have %d", c.ID, c.Offset, n, need, len(c.Data))
	}
	out := make([]E, n)
	if n > 0 {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&out[0])), uintptr(n)*unsafe.Sizeof(e)), c.Data[hdr:need])
	}
	return out, nil
}

// SparseMmapAreas decodes VFIO_REGION_INFO_CAP_SPARSE_MMAP.
func SparseMmapAreas(c Cap) ([]VfioRegionSparseMmapArea, error) {
	h, err := CapAs[VfioRegionInfoCapSparseMmap](c)
	if err != nil {
		return nil, err
	}
	return CapArray[VfioRegionSparseMmapArea](c, unsafe.Sizeof(*h), h.NrAreas)
}

// IovaRanges decodes VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE.
func IovaRanges(c Cap) ([]VfioIovaRange, error) {
	h, err := CapAs[VfioIommuType1InfoCapIovaRange](c)
	if err != nil {
		return nil, err
	}
	return CapArray[VfioIovaRange](c, unsafe.Sizeof(*h), h.NrIovas)
}
