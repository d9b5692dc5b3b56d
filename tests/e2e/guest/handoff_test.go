package guest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/dma"
	"github.com/vfioctl/vfioctl/edu"
	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/ioasid"
	"github.com/vfioctl/vfioctl/vfio"
)

// TestHandoffToUnprivilegedChild: a root parent opens edu in every mode and
// hands the descriptors over a unix socket to a child running as nobody
// with a 1 MiB RLIMIT_MEMLOCK, as libvirt and KubeVirt hand them to a VMM.
// The child opens no path: it rebuilds the Handle from the descriptors,
// round-trips DMA, gets an MSI, and a 16 MiB map fails with ENOMEM and the
// RLIMIT_MEMLOCK hint.
func TestHandoffToUnprivilegedChild(t *testing.T) {
	if os.Getenv("VFIOCTL_HANDOFF_CHILD") != "" {
		handoffChild()
		return
	}
	forModes(t, func(t *testing.T, m mode) {
		// tce_iommu_enable binds a SPAPR TCE v1 container to the enabling
		// mm (the parent, in Open): the child receives it, and its map is
		// refused with EPERM, which the child checks instead of a round trip.
		v1 := m.iommu == vfio.SPAPRTCE
		// Pages the child pins count against its own limit: type1 and SPAPR
		// charge the mapping process anyway; an iommufd does once told to,
		// and asking a container backend to is refused up front.
		perProcess := m.backend == vfio.Cdev || m.backend == vfio.GroupIOMMUFD
		if !perProcess {
			_, err := vfio.Open(eduAddr(t), &vfio.Options{Backend: m.backend, IOMMU: m.iommu, RlimitPerProcess: true})
			expect(t, "RlimitPerProcess on a container backend", err, unix.EINVAL, "Options.RlimitPerProcess", "creates none")
		}
		h, err := vfio.Open(eduAddr(t), &vfio.Options{Backend: m.backend, IOMMU: m.iommu, RlimitPerProcess: perProcess})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		if h.IOMMUFD() != nil {
			if err := h.IOMMUFD().SetRlimitPerProcess(false); err == nil || !strings.Contains(err.Error(), "before any object") {
				t.Errorf("changing the mode with objects present: %v, want EBUSY explained", err)
			}
			if v, err := h.IOMMUFD().GetOption(ioasid.OptionRlimitMode, 0); err != nil || v != 1 {
				t.Fatalf("rlimit mode = %d, %v; want 1 (per process)", v, err)
			}
		}
		pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		parentEnd := os.NewFile(uintptr(pair[0]), "handoff parent")
		childEnd := os.NewFile(uintptr(pair[1]), "handoff child")
		defer parentEnd.Close()
		exe, _ := os.Executable()
		cmd := exec.Command(exe, "-test.run=^TestHandoffToUnprivilegedChild$")
		cmd.Env = append(os.Environ(), "VFIOCTL_HANDOFF_CHILD=1")
		if v1 {
			cmd.Env = append(cmd.Env, "VFIOCTL_HANDOFF_REFUSED=1")
		}
		cmd.ExtraFiles = []*os.File{childEnd} // fd 3
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		childEnd.Close()
		conn, err := net.FileConn(parentEnd)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := h.Send(conn.(*net.UnixConn)); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("child: %v\n%s", err, out.String())
		}
		wants := []string{"received " + m.backendName(), "roundtrip ok", "msi ok", "RLIMIT_MEMLOCK"}
		if v1 {
			wants = []string{"received " + m.backendName(), "map refused: EPERM"}
		}
		for _, want := range wants {
			if !strings.Contains(out.String(), want) {
				t.Errorf("child output lacks %q:\n%s", want, out.String())
			}
		}
		if n, err := h.Mapper().UnmapAll(); Profile == "pseries" && !v1 {
			// The child used the SPAPR container first: it is the child's.
			if !errors.Is(err, unix.EPERM) || !strings.Contains(err.Error(), "only that process") {
				t.Errorf("the parent's UnmapAll of the child's SPAPR container: %v, want EPERM explained", err)
			}
		} else if err != nil || n != 0 {
			t.Errorf("after the child exited, %d bytes are still mapped (%v)", n, err)
		}
		t.Logf("child (nobody): %s", strings.ReplaceAll(strings.TrimSpace(out.String()), "\n", "; "))
	})
}

func (m mode) backendName() string { return m.backend.String() }

func handoffChild() {
	fail := func(f string, a ...any) { fmt.Printf("FAIL: "+f+"\n", a...); os.Exit(1) }
	if os.Getuid() == 0 {
		fail("the child runs as root")
	}
	// SPAPR TCE also counts the default window's TCE table (2 MiB for
	// 1 GiB of 4 KiB TCEs) against it when the child first maps.
	limit := uint64(1 << 20)
	if Profile == "pseries" {
		limit = 4 << 20
	}
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: limit, Max: limit}); err != nil {
		fail("setrlimit: %v", err)
	}
	conn, err := net.FileConn(os.NewFile(3, "handoff"))
	if err != nil {
		fail("%v", err)
	}
	h, err := vfio.Receive(conn.(*net.UnixConn))
	if err != nil {
		fail("receive: %v", err)
	}
	fmt.Printf("received %s: device %s\n", h.Backend(), h.Device().Name())
	if os.Getenv("VFIOCTL_HANDOFF_REFUSED") != "" {
		// A container enabled by another process: the kernel refuses this
		// one every call past CHECK_EXTENSION, the IOVA ranges (GET_INFO)
		// and the map among them.
		if _, err := h.Mapper().IOVARanges(); !errors.Is(err, unix.EPERM) {
			fail("IOVA ranges of a container another process enabled: %v, want EPERM", err)
		}
		buf, err := dma.CreateBuffer(os.Getpagesize())
		if err != nil {
			fail("%v", err)
		}
		if err := h.Mapper().Map(1<<20, buf.Bytes(), dma.ReadWrite); !errors.Is(err, unix.EPERM) {
			fail("map through a container another process enabled: %v, want EPERM", err)
		}
		fmt.Println("map refused: EPERM")
		os.Exit(0)
	}
	e, alloc, buf, iova := childRoundtrip(h, fail)
	fmt.Println("roundtrip ok")
	msi, err := vfio.CreateEventfd()
	if err != nil {
		fail("%v", err)
	}
	if err := h.Device().SetEventfds(vfio.MSIIRQ, 0, msi); err != nil {
		fail("%v", err)
	}
	if err := e.DMA(iova, edu.Buffer, 64, edu.CmdIRQ); err != nil {
		fail("%v", err)
	}
	if n, err := msi.Wait(5 * time.Second); err != nil || n == 0 {
		fail("no MSI: %d, %v", n, err)
	}
	e.Store32(edu.RegIRQAck, e.Load32(edu.RegIRQStat))
	h.Device().DisableIRQ(vfio.MSIIRQ)
	msi.Close()
	fmt.Println("msi ok")
	big, err := dma.CreateBuffer(16 << 20)
	if err != nil {
		fail("%v", err)
	}
	bigIOVA, _ := alloc.Reserve(16 << 20)
	err = h.Mapper().Map(bigIOVA, big.Bytes(), dma.ReadWrite)
	if !errors.Is(err, unix.ENOMEM) || !strings.Contains(err.Error(), "RLIMIT_MEMLOCK") {
		fail("16 MiB map with a %d MiB RLIMIT_MEMLOCK: %v, want ENOMEM explained", limit>>20, err)
	}
	fmt.Println(err)
	if err := h.Mapper().Unmap(iova, 8192); err != nil {
		fail("%v", err)
	}
	e.Close()
	buf.Close()
	big.Close()
	if err := h.Close(); err != nil {
		fail("close: %v", err)
	}
	if open := kernel.Open(); len(open) > 0 {
		fail("leaked fds: %v", open)
	}
	os.Exit(0)
}

// childRoundtrip is a child process's edu DMA round trip through h: 8 KiB
// mapped, 2000 bytes there and back. It returns the edu, the allocator,
// the mapped buffer and its IOVA.
func childRoundtrip(h *vfio.Handle, fail func(string, ...any)) (*edu.Edu, *dma.Allocator, *dma.Buffer, uint64) {
	e, err := edu.Open(h.Device())
	if err != nil {
		fail("%v", err)
	}
	alloc, err := dma.NewAllocatorFor(h.Mapper())
	if err != nil {
		fail("%v", err)
	}
	alloc.Limit(edu.DMAMask)
	buf, err := dma.CreateBuffer(8192)
	if err != nil {
		fail("%v", err)
	}
	iova, _ := alloc.Reserve(8192)
	if err := h.Mapper().Map(iova, buf.Bytes(), dma.ReadWrite); err != nil {
		fail("map 8 KiB: %v", err)
	}
	if err := e.Roundtrip(buf, iova, 2000); err != nil {
		fail("%v", err)
	}
	return e, alloc, buf, iova
}
