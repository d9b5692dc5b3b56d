package nvme

import (
	"errors"
	"math"
	"math/bits"
	"testing"
)

// rangeNamespace is a namespace of blocks blocks of bs bytes on a
// controller whose MDTS allows 2^mdts pages per command: enough for the
// range checks, which run before any command reaches a controller.
func rangeNamespace(blocks uint64, bs int, mdts uint8) *Namespace {
	c := &Controller{ident: &IdentifyController{MDTS: mdts}, cap: capRegs{mpsMin: 4096}}
	return &Namespace{c: c, Info: NamespaceInfo{ID: 1, Blocks: blocks, BlockSize: bs}}
}

// inside reports whether bytes [off, off+n) lie inside the namespace,
// computed without any sum that can wrap.
func inside(ns *Namespace, off, n int64) bool {
	hi, size := bits.Mul64(ns.Info.Blocks, uint64(ns.Info.BlockSize))
	if hi != 0 {
		size = math.MaxUint64 // a namespace larger than any byte offset
	}
	return off >= 0 && n > 0 && uint64(off) <= size && uint64(n) <= size-uint64(off)
}

// FuzzRangeChecks: whatever LBA, block count, offset and length a caller
// (the CLI's --lba and --blocks among them) gives, a request the driver
// accepts stays inside the namespace: Span's byte range, the command a
// Read or Write would send, and ReadAt's and WriteAt's offset checks.
// Everything refused is ErrBadRequest.
func FuzzRangeChecks(f *testing.F) {
	f.Add(uint64(131072), uint64(27776)|1<<55, uint64(1), int64(1<<55), uint32(4096))
	f.Add(uint64(131072), uint64(1)<<55, uint64(1)<<55, int64(-512), uint32(512))
	f.Add(uint64(131072), uint64(131071), uint64(2), int64(1<<62), uint32(1<<20))
	f.Add(uint64(1)<<60, uint64(0), uint64(1)<<59, int64(9223372036854775296), uint32(512))
	f.Add(uint64(131072), uint64(0), uint64(1), int64(9223372036854775296), uint32(512)) // off+n wraps to negative
	f.Fuzz(func(t *testing.T, blocks, lba, count uint64, off int64, n uint32) {
		ns := rangeNamespace(blocks, 512, 7)
		if o, m, err := ns.Span(lba, count); err == nil {
			if !inside(ns, o, m) || o != int64(lba*512) || m != int64(count*512) {
				t.Fatalf("Span(%d, %d) of %d blocks = [%d, +%d): outside the namespace", lba, count, blocks, o, m)
			}
		} else if !errors.Is(err, ErrBadRequest) {
			t.Fatalf("Span(%d, %d): %v, want ErrBadRequest", lba, count, err)
		}
		var cmd Command
		buf := Buffer{b: make([]byte, int(n%(1<<20)))}
		if err := ns.command(OpWrite, lba, buf, &cmd); err == nil {
			first := uint64(cmd.CDW10) | uint64(cmd.CDW11)<<32
			nlb := uint64(cmd.CDW12) + 1
			if first != lba || nlb*512 != uint64(buf.Len()) || first >= blocks || nlb > blocks-first {
				t.Fatalf("write of %d bytes at block %d of %d: command for blocks %d+%d", buf.Len(), lba, blocks, first, nlb)
			}
		} else if !errors.Is(err, ErrBadRequest) {
			t.Fatalf("command: %v, want ErrBadRequest", err)
		}
		// copyAt's checks, without a controller's pool behind them: a
		// request that passes them must be inside the namespace.
		if err := ns.checkAt(OpRead, int(n), off); err == nil {
			if n != 0 && !inside(ns, off, int64(n)) {
				t.Fatalf("ReadAt of %d bytes at %d accepted on %d blocks", n, off, blocks)
			}
		} else if !errors.Is(err, ErrBadRequest) {
			t.Fatalf("checkAt: %v, want ErrBadRequest", err)
		}
	})
}
