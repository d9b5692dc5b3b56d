package uapi

import (
	"encoding/binary"
	"testing"
	"unsafe"
)

// chain builds an info buffer of n bytes with caps at the given offsets,
// each pointing at the next.
func chain(n int, offs ...uint32) []byte {
	buf := make([]byte, n)
	for i, off := range offs {
		binary.NativeEndian.PutUint16(buf[off:], uint16(i+1))
		binary.NativeEndian.PutUint16(buf[off+2:], 1)
		next := uint32(0)
		if i+1 < len(offs) {
			next = offs[i+1]
		}
		binary.NativeEndian.PutUint32(buf[off+4:], next)
	}
	return buf
}

func TestCaps(t *testing.T) {
	caps, err := Caps(chain(64, 32, 48), 32, 32)
	if err != nil || len(caps) != 2 || caps[0].ID != 1 || caps[1].Offset != 48 {
		t.Fatalf("Caps = %+v, %v", caps, err)
	}
	loop := chain(64, 32, 48)
	binary.NativeEndian.PutUint32(loop[52:], 32)
	for name, c := range map[string]struct {
		buf        []byte
		first, min uint32
	}{
		"loop":      {loop, 32, 32},
		"past end":  {chain(64, 32), 60, 32},
		"in header": {chain(64, 32), 8, 32},
		"unaligned": {make([]byte, 64), 34, 32},
		"overflow":  {make([]byte, 64), 0xfffffffc, 32},
	} {
		if _, err := Caps(c.buf, c.first, c.min); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestSparseMmapAreas(t *testing.T) {
	hdr := unsafe.Sizeof(VfioRegionInfoCapSparseMmap{})
	buf := chain(int(32+hdr+2*16), 32)
	binary.NativeEndian.PutUint32(buf[32+8:], 2) // nr_areas
	binary.NativeEndian.PutUint64(buf[32+hdr+16:], 0x3000)
	caps, err := Caps(buf, 32, 32)
	if err != nil {
		t.Fatal(err)
	}
	areas, err := SparseMmapAreas(caps[0])
	if err != nil || len(areas) != 2 || areas[1].Offset != 0x3000 {
		t.Fatalf("areas = %+v, %v", areas, err)
	}
	binary.NativeEndian.PutUint32(buf[32+8:], 3) // claims more than the buffer holds
	if _, err := SparseMmapAreas(caps[0]); err == nil {
		t.Fatal("3 areas in a buffer of 2: no error")
	}
}

// FuzzCaps feeds arbitrary buffers to the walker and the decoders: they may
// return errors, never panic, and what they return lies inside the buffer.
func FuzzCaps(f *testing.F) {
	f.Add(chain(64, 32, 48), uint32(32), uint32(32))
	f.Add(chain(96, 24), uint32(24), uint32(16))
	f.Add([]byte{}, uint32(0), uint32(0))
	f.Fuzz(func(t *testing.T, buf []byte, first, min uint32) {
		caps, _ := Caps(buf, first, min)
		for _, c := range caps {
			if int(c.Offset)+8 > len(buf) || c.Offset < min {
				t.Fatalf("cap outside buffer: %+v (len %d)", c, len(buf))
			}
			_, _ = SparseMmapAreas(c)
			_, _ = IovaRanges(c)
			_, _ = CapAs[VfioRegionInfoCapType](c)
		}
	})
}
