package guest

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/hack/qemu"
	"github.com/vfioctl/vfioctl/vfio"
)

// The bochs display interface of mbochs: 16-bit registers at BAR2 0x500 +
// 2*index, as QEMU's bochs-display has them.
const (
	dispiBase   = 0x500
	dispiXRes   = 1
	dispiYRes   = 2
	dispiBPP    = 3
	dispiEnable = 4
	// ENABLED | LFB_ENABLED, as bochs-drm writes it.
	dispiOn = 0x41
	// DRM_FORMAT_XRGB8888.
	formatXR24 = 0x34325258
)

// TestDisplay reads the planes of the samples' display devices in every
// mode an mdev opens through: mbochs hands out dma-bufs for the mode its
// guest programs, mdpy a region whose mapping shows what BAR0 holds.
func TestDisplay(t *testing.T) {
	for _, m := range mdevModes {
		t.Run(m.name, func(t *testing.T) {
			if !offered(t, m.backend) {
				t.Skipf("the boot does not offer %s (%s=%s)", m.backend, qemu.OfferEnv, os.Getenv(qemu.OfferEnv))
			}
			t.Run("mbochs", func(t *testing.T) { displayMbochs(t, m.backend) })
			t.Run("mdpy", func(t *testing.T) { displayMdpy(t, m.backend) })
		})
	}
	t.Run("cli", displayCLI)
}

func openMdev(t *testing.T, id string, b vfio.Backend) *vfio.Device {
	t.Helper()
	h, err := vfio.Open(id, &vfio.Options{Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h.Device()
}

func displayMbochs(t *testing.T, b vfio.Backend) {
	needMdev(t, "mbochs")
	d := openMdev(t, createMdev(t, "mbochs", "mbochs-small"), b)
	if k, err := d.Display(); err != nil || k != vfio.DisplayDMABuf {
		t.Fatalf("mbochs's display: %v, %v; want dma-buf planes", k, err)
	}
	for _, pt := range []vfio.PlaneType{vfio.PlanePrimary, vfio.PlaneCursor} {
		if p, err := d.Plane(vfio.DisplayDMABuf, pt); err != nil || !p.Empty() {
			t.Errorf("%s plane before the guest sets a mode: %v, %v; want empty", pt, p, err)
		}
	}
	if _, err := d.Plane(vfio.DisplayRegion, vfio.PlanePrimary); !errors.Is(err, unix.EINVAL) {
		t.Errorf("a region plane of a dma-buf display: %v, want EINVAL", err)
	}
	mmio, err := d.Region(vfio.BAR0Region + 2)
	if err != nil {
		t.Fatal(err)
	}
	setMode := func(w, h uint16) {
		for _, r := range [][2]uint16{{dispiEnable, 0}, {dispiXRes, w}, {dispiYRes, h}, {dispiBPP, 32}, {dispiEnable, dispiOn}} {
			if _, err := mmio.WriteAt(binary.LittleEndian.AppendUint16(nil, r[1]), dispiBase+2*int64(r[0])); err != nil {
				t.Fatal(err)
			}
		}
	}
	var ids []uint32
	for _, mode := range [][2]uint16{{640, 480}, {800, 600}} {
		setMode(mode[0], mode[1])
		w, h := uint32(mode[0]), uint32(mode[1])
		// The first query after a mode change is ENOMEM on mbochs (it
		// allocates the dma-buf but does not keep the pointer): Plane's
		// retry must hide that.
		p, err := d.Plane(vfio.DisplayDMABuf, vfio.PlanePrimary)
		if err != nil {
			t.Fatalf("primary plane after a %dx%d mode set: %v", w, h, err)
		}
		if p.Format != formatXR24 || p.Width != w || p.Height != h || p.Stride != 4*w || p.Size != 4*w*h || p.DMABufID == 0 {
			t.Errorf("primary plane after a %dx%d mode set: %v, want XR24 %dx%d stride %d, %d bytes in a dma-buf", w, h, p, w, h, 4*w, 4*w*h)
		}
		f, err := d.PlaneDMABuf(p)
		if err != nil {
			t.Fatal(err)
		}
		size, err := f.Seek(0, io.SeekEnd)
		f.Close()
		if err != nil || size < int64(p.Size) {
			t.Errorf("the dma-buf of %v is %d bytes (%v)", p, size, err)
		}
		if c, err := d.Plane(vfio.DisplayDMABuf, vfio.PlaneCursor); err != nil || !c.Empty() {
			t.Errorf("mbochs has no cursor, its plane: %v, %v", c, err)
		}
		t.Logf("%s: %v; dma-buf %d bytes", b, p, size)
		ids = append(ids, p.DMABufID)
	}
	if ids[0] == ids[1] {
		t.Errorf("two modes share dma-buf id %d", ids[0])
	}
	if _, err := d.PlaneDMABuf(vfio.Plane{Kind: vfio.DisplayDMABuf, Type: vfio.PlanePrimary, Format: formatXR24, DMABufID: 0xdead}); !errors.Is(err, unix.ENOENT) {
		t.Errorf("the dma-buf of an id mbochs never gave: %v, want ENOENT", err)
	}
	setMode(0, 0)
	if p, err := d.Plane(vfio.DisplayDMABuf, vfio.PlanePrimary); err != nil || !p.Empty() {
		t.Errorf("primary plane with a 0x0 mode: %v, %v; want empty", p, err)
	}
}

func displayMdpy(t *testing.T, b vfio.Backend) {
	needMdev(t, "mdpy")
	d := openMdev(t, createMdev(t, "mdpy", "mdpy-vga"), b)
	if k, err := d.Display(); err != nil || k != vfio.DisplayRegion {
		t.Fatalf("mdpy's display: %v, %v; want region planes", k, err)
	}
	p, err := d.Plane(vfio.DisplayRegion, vfio.PlanePrimary)
	if err != nil {
		t.Fatal(err)
	}
	if p.Format != formatXR24 || p.Width != 640 || p.Height != 480 || p.Stride != 2560 || p.Size < 2560*480 {
		t.Errorf("mdpy-vga's plane: %v, want XR24 640x480 stride 2560", p)
	}
	if p.Region < vfio.RegionIndex(d.Info().NumRegions) {
		t.Errorf("mdpy's plane is in region %d, one GET_INFO counts (%d): the test no longer proves a region beyond them opens", p.Region, d.Info().NumRegions)
	}
	// mdpy has no cursor but ignores the plane asked for (6.1 and 6.12
	// alike): the cursor's query describes the frame again.
	if c, err := d.Plane(vfio.DisplayRegion, vfio.PlaneCursor); err != nil || c.Type != vfio.PlaneCursor || c.Width != p.Width || c.Region != p.Region {
		t.Errorf("mdpy's answer for the cursor plane: %v, %v; want the frame's description", c, err)
	}
	bar, err := d.Region(vfio.BAR0Region)
	if err != nil {
		t.Fatal(err)
	}
	fb, err := bar.MapRange(0, uint64(p.Stride*p.Height))
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	reg, err := d.PlaneRegion(p)
	if err != nil {
		t.Fatal(err)
	}
	shown, err := reg.MapRange(0, uint64(p.Stride*p.Height))
	if err != nil {
		t.Fatal(err)
	}
	defer shown.Close()
	pixels := make([]byte, p.Stride*p.Height)
	if _, err := rand.Read(pixels); err != nil {
		t.Fatal(err)
	}
	n := int(p.Width * p.Height)
	for i := 0; i < n; i++ {
		fb.Store32(uintptr(4*i), binary.LittleEndian.Uint32(pixels[4*i:]))
	}
	same := 0
	for i := 0; i < n; i++ {
		if shown.Load32(uintptr(4*i)) == binary.LittleEndian.Uint32(pixels[4*i:]) {
			same++
		}
	}
	if same != n {
		t.Errorf("the plane's region shows %d of the %d pixels written through BAR0", same, n)
	}
	t.Logf("%s: %v; %d of %d pixels written through BAR0 read back through region %d", b, p, same, n, p.Region)
}

// displayCLI: vfioctl info on an mdev shows its display.
func displayCLI(t *testing.T) {
	needMdev(t, "mdpy")
	id := createMdev(t, "mdpy", "mdpy-vga")
	var info struct {
		Display *struct {
			Kind   string `json:"kind"`
			Planes []struct {
				Type   string `json:"type"`
				Format uint32 `json:"drm_format"`
				Width  uint32 `json:"width"`
				Height uint32 `json:"height"`
				Region uint32 `json:"region"`
			} `json:"planes"`
		} `json:"display"`
	}
	if err := json.Unmarshal([]byte(mustExit(t, 0, "info", "--json", "--backend", "legacy", id)), &info); err != nil {
		t.Fatal(err)
	}
	if d := info.Display; d == nil || d.Kind != "region" || len(d.Planes) == 0 || d.Planes[0].Type != "primary" ||
		d.Planes[0].Format != formatXR24 || d.Planes[0].Width != 640 || d.Planes[0].Height != 480 || d.Planes[0].Region != 16 {
		t.Errorf("vfioctl info --json on mdpy-vga: display %+v", info.Display)
	}
	out := mustExit(t, 0, "info", "--backend", "legacy", id)
	if want := "primary XR24 640x480 stride 2560"; !strings.Contains(out, want) {
		t.Errorf("vfioctl info on mdpy-vga does not say %q:\n%s", want, out)
	}
}
