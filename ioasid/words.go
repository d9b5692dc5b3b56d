package ioasid

import "encoding/binary"

// words reads a kernel bitmap (native-endian 64-bit words).
func words(raw []byte) []uint64 {
	out := make([]uint64, len(raw)/8)
	for i := range out {
		out[i] = binary.NativeEndian.Uint64(raw[8*i:])
	}
	return out
}
