package nvme

import (
	"math"
	"math/rand"
	"testing"
	"time"
	"unsafe"
)

func TestLayouts(t *testing.T) {
	if s := unsafe.Sizeof(Command{}); s != 64 {
		t.Errorf("submission entry is %d bytes, want 64", s)
	}
	if s := unsafe.Sizeof(completion{}); s != 16 {
		t.Errorf("completion entry is %d bytes, want 16", s)
	}
	if o := unsafe.Offsetof(Command{}.PRP1); o != 24 {
		t.Errorf("PRP1 at %d, want 24", o)
	}
	if o := unsafe.Offsetof(Command{}.CDW10); o != 40 {
		t.Errorf("CDW10 at %d, want 40", o)
	}
	if o := unsafe.Offsetof(completion{}.CID); o != 12 {
		t.Errorf("CID at %d, want 12", o)
	}
}

func TestDecodeCAP(t *testing.T) {
	// QEMU 7.2's nvme: MQES 2047, CQR, TO 15 (7.5 s), DSTRD 0, NVM set, MPSMIN 0, MPSMAX 4.
	c := decodeCAP(0x0040_0020_0f01_07ff)
	if c.mqes != 2048 || c.timeout != 7500*time.Millisecond || c.dstrd != 0 || c.mpsMin != 4096 || c.css&1 != 1 {
		t.Errorf("decoded %+v", c)
	}
	if got := c.sqDoorbell(1); got != 0x1008 {
		t.Errorf("SQ 1 doorbell at %#x, want 0x1008", got)
	}
	if got := (capRegs{dstrd: 2}).cqDoorbell(1); got != 0x1000+3*16 {
		t.Errorf("CQ 1 doorbell with stride 16 at %#x", got)
	}
}

func TestStatus(t *testing.T) {
	// Completion status field: phase bit 0, SC 8:1, SCT 11:9, DNR 15.
	s := statusOf(0x80<<1 | 1<<15 | 1)
	if s.SC() != 0x80 || s.SCT() != 0 || !s.DNR() || s.String() != "LBA out of range (SCT 0x0 SC 0x80)" {
		t.Errorf("status %v: SC %#x SCT %d DNR %v", s, s.SC(), s.SCT(), s.DNR())
	}
	if s := statusOf(1<<9 | 2<<1); s.SCT() != 1 || s.String() != "invalid queue size (SCT 0x1 SC 0x2)" {
		t.Errorf("command-specific status %v", s)
	}
}

func TestPRPs(t *testing.T) {
	q := &QueuePair{prps: make([]uint64, 3*prpsPerPage), prpIOVA: 0x100000, prpStride: pageSize}
	var c Command
	for _, tc := range []struct {
		n          int
		prp1, prp2 uint64
	}{
		{512, 0x10000, 0},
		{4096, 0x10000, 0},
		{4097, 0x10000, 0x11000},
		{8192, 0x10000, 0x11000},
		{3 * 4096, 0x10000, 0x100000 + 2*pageSize}, // cid 2's list page
	} {
		if err := q.setPRPs(&c, 2, 0x10000, tc.n); err != nil || c.PRP1 != tc.prp1 || c.PRP2 != tc.prp2 {
			t.Errorf("%d bytes: PRP1 %#x PRP2 %#x (%v), want %#x %#x", tc.n, c.PRP1, c.PRP2, err, tc.prp1, tc.prp2)
		}
	}
	list := q.prps[2*prpsPerPage : 2*prpsPerPage+2]
	if list[0] != 0x11000 || list[1] != 0x12000 {
		t.Errorf("PRP list %#x", list)
	}
	if err := q.setPRPs(&c, 0, 0x10000, (prpsPerPage+2)*pageSize); err == nil {
		t.Error("a transfer beyond one PRP list page was accepted")
	}
}

func TestLatencies(t *testing.T) {
	l := NewLatencies(4)
	for _, i := range rand.Perm(1000) { // 1..1000 µs, shuffled
		l.Add(time.Duration(i+1) * time.Microsecond)
	}
	l.Add(-time.Second)     // counted as 0
	l.Add(10 * time.Second) // saturates at 4.29 s
	r := l.Result(2 * time.Second)
	want := BenchResult{IOs: 1002, Elapsed: 2 * time.Second, IOPS: 501, Min: 0, Mean: (500500*time.Microsecond + math.MaxUint32) / 1002,
		P50: 500 * time.Microsecond, P99: 991 * time.Microsecond, P999: 1000 * time.Microsecond, Max: math.MaxUint32}
	// nearest rank: p50 of 1002 is the 501st (0, 1..1000 µs, 4.29 s: 500 µs),
	// p99 the 992nd (991 µs), p99.9 the 1001st (1000 µs).
	if r != want {
		t.Errorf("got  %+v\nwant %+v", r, want)
	}
	if e := NewLatencies(0).Result(time.Second); e.IOs != 0 || e.IOPS != 0 {
		t.Errorf("empty: %+v", e)
	}
}

func TestNeedEvent(t *testing.T) {
	for _, tc := range []struct {
		ev, v, old uint16
		want       bool
	}{
		{ev: 4, v: 5, old: 4, want: true},         // the controller waits for 4 -> 5
		{ev: 3, v: 5, old: 4, want: false},        // it waited for 3, saw 4: it looks on by itself
		{ev: 4, v: 6, old: 3, want: true},         // 3 -> 6 passes the awaited 4
		{ev: 65535, v: 1, old: 65534, want: true}, // wraps
		{ev: 10, v: 5, old: 4, want: false},       // EventIdx ahead: no write
	} {
		if got := needEvent(tc.ev, tc.v, tc.old); got != tc.want {
			t.Errorf("needEvent(ev %d, %d -> %d) = %v", tc.ev, tc.old, tc.v, got)
		}
	}
}
