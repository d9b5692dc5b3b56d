package guest

import (
	"os"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/dma"
	"github.com/vfioctl/vfioctl/internal/allocs"
	"github.com/vfioctl/vfioctl/uapi"
	"github.com/vfioctl/vfioctl/vfio"
)

// TestMapUnmapAllocs: the DMA hot path allocates nothing, in every mode.
func TestMapUnmapAllocs(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		e := openEdu(t, m)
		buf, err := dma.CreateBuffer(4096)
		if err != nil {
			t.Fatal(err)
		}
		defer buf.Close()
		iova, _ := e.alloc.Reserve(4096)
		mem := buf.Bytes()
		pair := func() {
			if err := e.Mapper().Map(iova, mem, dma.ReadWrite); err != nil {
				t.Fatal(err)
			}
			if err := e.Mapper().Unmap(iova, uint64(len(mem))); err != nil {
				t.Fatal(err)
			}
		}
		if n := allocs.Count(200, pair); n != 0 {
			t.Fatalf("200 map+unmap pairs allocate %d times, want 0; where, in 200 more:\n%s", n, strings.Join(allocs.Where(200, pair), "\n"))
		}
	})
}

// rawMapUnmap issues the same ioctls as the API with unix.Syscall directly.
func rawMapUnmap(b *testing.B, h *vfio.Handle, iova uint64, mem []byte) {
	var fd int
	var err error
	if h.Container() != nil {
		fd, err = h.Container().FD()
	} else {
		fd, err = h.IOMMUFD().FD()
	}
	if err != nil {
		b.Fatal(err)
	}
	ioctl := func(req uint, p unsafe.Pointer) {
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(p)); errno != 0 {
			b.Fatal(errno)
		}
	}
	for i := 0; i < b.N; i++ {
		if h.Container() != nil {
			m := uapi.VfioIommuType1DmaMap{Argsz: uint32(unsafe.Sizeof(uapi.VfioIommuType1DmaMap{})), Flags: uapi.VFIO_DMA_MAP_FLAG_READ | uapi.VFIO_DMA_MAP_FLAG_WRITE,
				Vaddr: uapi.SlicePointer(mem), Iova: iova, Size: uint64(len(mem))}
			ioctl(uapi.VFIO_IOMMU_MAP_DMA, unsafe.Pointer(&m))
			u := uapi.VfioIommuType1DmaUnmap{Argsz: uint32(unsafe.Sizeof(uapi.VfioIommuType1DmaUnmap{})), Iova: iova, Size: uint64(len(mem))}
			ioctl(uapi.VFIO_IOMMU_UNMAP_DMA, unsafe.Pointer(&u))
		} else {
			m := uapi.IommuIoasMap{Size: uint32(unsafe.Sizeof(uapi.IommuIoasMap{})), IoasId: h.IOAS().ID(),
				Flags:  uapi.IOMMU_IOAS_MAP_FIXED_IOVA | uapi.IOMMU_IOAS_MAP_READABLE | uapi.IOMMU_IOAS_MAP_WRITEABLE,
				UserVa: uapi.SlicePointer(mem), Length: uint64(len(mem)), Iova: iova}
			ioctl(uapi.IOMMU_IOAS_MAP, unsafe.Pointer(&m))
			u := uapi.IommuIoasUnmap{Size: uint32(unsafe.Sizeof(uapi.IommuIoasUnmap{})), IoasId: h.IOAS().ID(), Iova: iova, Length: uint64(len(mem))}
			ioctl(uapi.IOMMU_IOAS_UNMAP, unsafe.Pointer(&u))
		}
	}
}

// BenchmarkMapUnmap4K: a 4 KiB map+unmap pair through the Go API and the
// same ioctls issued directly, per mode, in the same run.
func BenchmarkMapUnmap4K(b *testing.B) {
	for _, m := range supportedModes(b) {
		h, err := vfio.Open(eduAddr(b), &vfio.Options{Backend: m.backend, IOMMU: m.iommu})
		if err != nil {
			b.Fatal(err)
		}
		buf, _ := dma.CreateBuffer(4096)
		const iova = 0x100000
		mem := buf.Bytes()
		b.Run(m.name+"/api", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if err := h.Mapper().Map(iova, mem, dma.ReadWrite); err != nil {
					b.Fatal(err)
				}
				if err := h.Mapper().Unmap(iova, 4096); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(m.name+"/raw", func(b *testing.B) {
			b.ReportAllocs()
			rawMapUnmap(b, h, iova, mem)
		})
		buf.Close()
		h.Close()
	}
}

// BenchmarkMap256M maps and unmaps 256 MiB through the native IOAS three
// ways: 65536 calls of 4 KiB, 128 calls of 2 MiB huge pages, one call.
func BenchmarkMap256M(b *testing.B) {
	const total = 256 << 20
	if err := os.WriteFile("/proc/sys/vm/nr_hugepages", []byte("160"), 0); err != nil {
		b.Fatal(err)
	}
	h, err := vfio.Open(eduAddr(b), &vfio.Options{Backend: vfio.Cdev})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	anon, err := dma.CreateBuffer(total)
	if err != nil {
		b.Fatal(err)
	}
	defer anon.Close()
	huge, err := dma.CreateHugeBuffer(total)
	if err != nil {
		b.Fatal(err)
	}
	defer huge.Close()
	const base = 1 << 32
	run := func(name string, buf *dma.Buffer, chunk int) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(total)
			for i := 0; i < b.N; i++ {
				mem := buf.Bytes()
				for off := 0; off < total; off += chunk {
					if err := h.Mapper().Map(base+uint64(off), mem[off:off+chunk], dma.ReadWrite); err != nil {
						b.Fatal(err)
					}
				}
				for off := 0; off < total; off += chunk {
					if err := h.Mapper().Unmap(base+uint64(off), uint64(chunk)); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
	run("4KiB-pages", anon, 4096)
	run("2MiB-hugepages", huge, 2<<20)
	run("one-call", anon, total)
}
