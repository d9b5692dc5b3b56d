package uapi

import (
	"errors"
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/allocs"
)

// The helpers fill the size field and reach the kernel: on a file that is
// not VFIO the kernel answers ENOTTY, which a helper returns as the errno.
func devNull(t *testing.T) int {
	t.Helper()
	f, err := os.Open("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return int(f.Fd())
}

func TestHelpersSetSizeAndReachKernel(t *testing.T) {
	fd := devNull(t)
	m := IommuIoasMap{Iova: 0x1000}
	if err := IoctlIommuIoasMap(fd, &m); !errors.Is(err, unix.ENOTTY) {
		t.Fatalf("IOMMU_IOAS_MAP on /dev/null = %v, want ENOTTY", err)
	}
	if m.Size != uint32(unsafe.Sizeof(m)) || m.Iova != 0x1000 {
		t.Fatalf("size %d (want %d), iova %#x", m.Size, unsafe.Sizeof(m), m.Iova)
	}
	d := VfioIommuType1DmaMap{}
	if _, err := IoctlVfioIommuMapDma(fd, &d); !errors.Is(err, unix.ENOTTY) || d.Argsz != uint32(unsafe.Sizeof(d)) {
		t.Fatalf("VFIO_IOMMU_MAP_DMA: %v, argsz %d", err, d.Argsz)
	}
	buf := make([]byte, 64)
	if err := IoctlVfioDeviceGetInfo(fd, buf); !errors.Is(err, unix.ENOTTY) {
		t.Fatalf("VFIO_DEVICE_GET_INFO: %v", err)
	}
	if got := (*VfioDeviceInfo)(unsafe.Pointer(&buf[0])).Argsz; got != 64 {
		t.Fatalf("buffer argsz = %d, want 64", got)
	}
	if err := IoctlVfioDeviceGetInfo(fd, buf[:4]); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("short buffer: %v, want EINVAL", err)
	}
	if _, err := IoctlVfioGroupGetDeviceFd(fd, "a\x00b"); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("NUL in name: %v, want EINVAL", err)
	}
}

// A struct on the stack goes to the kernel without escaping: the map and
// unmap hot path allocates nothing, even when the kernel refuses.
func TestHelpersDoNotAllocate(t *testing.T) {
	fd := devNull(t)
	n := allocs.Count(200, func() {
		m := IommuIoasMap{Iova: 0x2000, Length: 4096}
		if err := IoctlIommuIoasMap(fd, &m); err == nil {
			t.Fatal("IOMMU_IOAS_MAP on /dev/null succeeded")
		}
		u := VfioIommuType1DmaUnmap{Iova: 0x2000, Size: 4096}
		if _, err := IoctlVfioIommuUnmapDma(fd, &u); err == nil {
			t.Fatal("VFIO_IOMMU_UNMAP_DMA on /dev/null succeeded")
		}
	})
	if n != 0 {
		t.Fatalf("200 map+unmap pairs allocate %d times, want 0", n)
	}
}
