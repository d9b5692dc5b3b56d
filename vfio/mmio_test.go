package vfio

import (
	"encoding/binary"
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/vfioerr"
)

// TestMMIOAccess: on a page standing in for a BAR, each store writes its
// width at its offset and nothing around it (amd64's stores are assembly),
// loads read back what was stored, and an access after Close panics with
// ErrClosed.
func TestMMIOAccess(t *testing.T) {
	mem, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	m := &MMIO{mem: mem, name: "test page"}
	for i := range mem {
		mem[i] = 0xee
	}
	m.Store32(0x104, 0x11223344)
	m.Store64(0x208, 0x0102030405060708)
	for off, want := range map[int][]byte{
		0x100: {0xee, 0xee, 0xee, 0xee, 0x44, 0x33, 0x22, 0x11, 0xee},
		0x204: {0xee, 0xee, 0xee, 0xee, 8, 7, 6, 5, 4, 3, 2, 1, 0xee},
	} {
		if got := mem[off : off+len(want)]; string(got) != string(want) {
			t.Errorf("bytes at %#x: % x, want % x", off, got, want)
		}
	}
	if v := m.Load32(0x104); v != 0x11223344 {
		t.Errorf("Load32 = %#x", v)
	}
	if v := m.Load64(0x208); v != 0x0102030405060708 || v != binary.LittleEndian.Uint64(mem[0x208:]) {
		t.Errorf("Load64 = %#x", v)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		err, _ := recover().(error)
		if !errors.Is(err, vfioerr.ErrClosed) {
			t.Errorf("Store32 after Close: panic %v, want ErrClosed", err)
		}
	}()
	m.Store32(0, 1)
}
