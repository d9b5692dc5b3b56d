package vfio

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/uapi"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// DisplayKind is how a device with a display (a vGPU, the mdpy and mbochs
// samples) hands out its planes.
type DisplayKind uint32

const (
	// DisplayDMABuf planes come as dma-bufs (GET_GFX_DMABUF), for a
	// compositor to import (Intel GVT-g, mbochs).
	DisplayDMABuf DisplayKind = uapi.VFIO_GFX_PLANE_TYPE_DMABUF
	// DisplayRegion planes lie in a device region the VMM maps
	// (NVIDIA's vGPU, mdpy).
	DisplayRegion DisplayKind = uapi.VFIO_GFX_PLANE_TYPE_REGION
)

func (k DisplayKind) String() string {
	switch k {
	case DisplayDMABuf:
		return "dmabuf"
	case DisplayRegion:
		return "region"
	}
	return fmt.Sprintf("DisplayKind(%d)", uint32(k))
}

// MarshalText names the kind in JSON ("dmabuf", "region").
func (k DisplayKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// PlaneType is a DRM plane type (DRM_PLANE_TYPE_*): which plane to query.
type PlaneType uint32

// The planes a VMM shows: the frame and the cursor over it.
const (
	PlanePrimary PlaneType = 1
	PlaneCursor  PlaneType = 2
)

func (t PlaneType) String() string {
	switch t {
	case PlanePrimary:
		return "primary"
	case PlaneCursor:
		return "cursor"
	}
	return fmt.Sprintf("PlaneType(%d)", uint32(t))
}

// MarshalText names the plane in JSON ("primary", "cursor").
func (t PlaneType) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// Plane is VFIO_DEVICE_QUERY_GFX_PLANE's answer. A plane with Format 0 is
// empty: the guest has no mode set (or no cursor) yet.
type Plane struct {
	Kind     DisplayKind `json:"kind"`
	Type     PlaneType   `json:"type"`
	Format   uint32      `json:"drm_format"` // DRM fourcc, e.g. XR24 (FormatName)
	Modifier uint64      `json:"drm_format_modifier"`
	Width    uint32      `json:"width"`
	Height   uint32      `json:"height"`
	Stride   uint32      `json:"stride"`
	Size     uint32      `json:"size"`
	X        uint32      `json:"x"` // the cursor's position
	Y        uint32      `json:"y"`
	XHot     uint32      `json:"x_hot"`
	YHot     uint32      `json:"y_hot"`
	// Region is the region holding the plane (DisplayRegion: open it
	// with PlaneRegion); DMABufID names its dma-buf (DisplayDMABuf:
	// PlaneDMABuf).
	Region   RegionIndex `json:"region,omitempty"`
	DMABufID uint32      `json:"dmabuf_id,omitempty"`
}

// String is the plane as a VMM's log would say it: "primary XR24 640x480
// stride 2560, 1228800 bytes in dma-buf 1".
func (p Plane) String() string {
	if p.Empty() {
		return p.Type.String() + " empty"
	}
	where := fmt.Sprintf("region %d", p.Region)
	if p.Kind == DisplayDMABuf {
		where = fmt.Sprintf("dma-buf %d", p.DMABufID)
	}
	s := fmt.Sprintf("%s %s %dx%d stride %d, %d bytes in %s", p.Type, p.FormatName(), p.Width, p.Height, p.Stride, p.Size, where)
	if p.Type == PlaneCursor {
		s += fmt.Sprintf(" at %d,%d hot spot %d,%d", p.X, p.Y, p.XHot, p.YHot)
	}
	return s
}

// Empty reports a plane with nothing to show.
func (p Plane) Empty() bool { return p.Format == 0 }

// FormatName is the DRM fourcc as its four characters ("XR24").
func (p Plane) FormatName() string {
	if p.Format == 0 {
		return "none"
	}
	return string([]byte{byte(p.Format), byte(p.Format >> 8), byte(p.Format >> 16), byte(p.Format >> 24)})
}

func (d *Device) queryPlane(flags uint32, t PlaneType) (uapi.VfioDeviceGfxPlaneInfo, error) {
	info := uapi.VfioDeviceGfxPlaneInfo{Flags: flags, DrmPlaneType: uint32(t)}
	err := d.fd.Ioctl(kernel.Call{Op: "VFIO_DEVICE_QUERY_GFX_PLANE", Args: fmt.Sprintf("flags %#x plane %s", flags, t)},
		func(fd int) error { return uapi.IoctlVfioDeviceQueryGfxPlane(fd, &info) })
	return info, err
}

// Display is how the device shows its planes (QUERY_GFX_PLANE with
// PROBE), or vfioerr.ErrNotSupported for a device without a display.
func (d *Device) Display() (DisplayKind, error) {
	for _, k := range []DisplayKind{DisplayDMABuf, DisplayRegion} {
		_, err := d.queryPlane(uapi.VFIO_GFX_PLANE_TYPE_PROBE|uint32(k), PlanePrimary)
		switch {
		case err == nil:
			return k, nil
		case !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOTTY):
			return 0, err
		}
	}
	return 0, &vfioerr.NotSupportedError{Feature: "a display (VFIO_DEVICE_QUERY_GFX_PLANE) on " + d.Name(),
		Reason: "the device offers neither dma-buf nor region planes (only vGPUs and the mdpy and mbochs samples have one)"}
}

// Plane is VFIO_DEVICE_QUERY_GFX_PLANE for plane t of a display of kind
// k. A driver may fail the first query after the guest changes its mode
// while it sets the new plane up (6.12's mbochs answers ENOMEM once): Plane
// asks again, twice at most, as a VMM's next refresh would.
func (d *Device) Plane(k DisplayKind, t PlaneType) (Plane, error) {
	var info uapi.VfioDeviceGfxPlaneInfo
	var err error
	for try := 0; try < 3; try++ {
		if info, err = d.queryPlane(uint32(k), t); err == nil || !(errors.Is(err, unix.ENOMEM) || errors.Is(err, unix.EAGAIN)) {
			break
		}
	}
	if err != nil {
		return Plane{}, err
	}
	p := Plane{Kind: k, Type: PlaneType(info.DrmPlaneType), Format: info.DrmFormat, Modifier: info.DrmFormatMod,
		Width: info.Width, Height: info.Height, Stride: info.Stride, Size: info.Size,
		X: info.XPos, Y: info.YPos, XHot: info.XHot, YHot: info.YHot}
	if p.Type == 0 {
		p.Type = t
	}
	if k == DisplayRegion {
		p.Region = RegionIndex(info.RegionIndex)
	} else {
		p.DMABufID = info.RegionIndex // the union's other name
	}
	return p, nil
}

// PlaneRegion opens the region of a DisplayRegion plane, which may lie
// beyond the regions GET_INFO counts (mdpy's is index 16).
func (d *Device) PlaneRegion(p Plane) (*Region, error) {
	if p.Kind != DisplayRegion || p.Empty() {
		return nil, kernel.Call{Op: "VFIO_DEVICE_GET_REGION_INFO", Object: d.Name(), Args: fmt.Sprintf("plane %s", p.Type)}.
			Refuse(unix.EINVAL, "the plane is not a region plane with content")
	}
	return d.region(p.Region)
}

// PlaneDMABuf is VFIO_DEVICE_GET_GFX_DMABUF: the dma-buf of a
// DisplayDMABuf plane, owned by the caller. Its size (Seek to the end)
// is the plane's.
func (d *Device) PlaneDMABuf(p Plane) (*os.File, error) {
	if p.Kind != DisplayDMABuf || p.Empty() {
		return nil, kernel.Call{Op: "VFIO_DEVICE_GET_GFX_DMABUF", Object: d.Name(), Args: fmt.Sprintf("plane %s", p.Type)}.
			Refuse(unix.EINVAL, "the plane is not a dma-buf plane with content")
	}
	id := p.DMABufID
	var fd int
	err := d.fd.Ioctl(kernel.Call{Op: "VFIO_DEVICE_GET_GFX_DMABUF", Args: fmt.Sprintf("dmabuf %d", id),
		Hints: kernel.Hints{unix.ENOENT: kernel.Say("no such dma-buf: query the plane again (ids change with the guest's mode)")}},
		func(raw int) error {
			var err error
			fd, err = uapi.IoctlVfioDeviceGetGfxDmabuf(raw, &id)
			return err
		})
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), fmt.Sprintf("%s dma-buf %d", d.Name(), p.DMABufID)), nil
}
