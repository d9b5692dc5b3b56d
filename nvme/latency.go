package nvme

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Latencies records I/O latencies, every one, for exact percentiles: a
// benchmark and the baselines it is set against (the kernel's pread or
// io_uring, say) summarize theirs the same way. Each takes 4 bytes
// (nanoseconds, up to 4.29 s, longer ones counted as that); Add allocates
// only when the capacity given to NewLatencies runs out.
type Latencies struct {
	ns []uint32
}

// NewLatencies makes a record with room for n latencies.
func NewLatencies(n int) *Latencies { return &Latencies{ns: make([]uint32, 0, n)} }

// Add records one latency.
func (l *Latencies) Add(d time.Duration) {
	l.ns = append(l.ns, uint32(min(max(d, 0), math.MaxUint32)))
}

// Len is how many latencies were recorded.
func (l *Latencies) Len() int { return len(l.ns) }

// Merge adds o's latencies to l's.
func (l *Latencies) Merge(o *Latencies) { l.ns = append(l.ns, o.ns...) }

// Result summarizes the record for I/Os done in elapsed: IOPS, the
// smallest, mean and largest latency and the exact (nearest-rank)
// percentiles. It sorts the record.
func (l *Latencies) Result(elapsed time.Duration) BenchResult {
	r := BenchResult{IOs: uint64(len(l.ns)), Elapsed: elapsed}
	if len(l.ns) == 0 {
		return r
	}
	slices.Sort(l.ns)
	var sum uint64
	for _, v := range l.ns {
		sum += uint64(v)
	}
	rank := func(q float64) time.Duration {
		i := int(math.Ceil(q*float64(len(l.ns)))) - 1
		return time.Duration(l.ns[max(i, 0)])
	}
	r.IOPS = float64(len(l.ns)) / elapsed.Seconds()
	r.Min, r.Max = time.Duration(l.ns[0]), time.Duration(l.ns[len(l.ns)-1])
	r.Mean = time.Duration(sum / uint64(len(l.ns)))
	r.P50, r.P99, r.P999 = rank(0.5), rank(0.99), rank(0.999)
	return r
}

// BenchResult is what a benchmark measured.
type BenchResult struct {
	IOs     uint64        `json:"ios"`
	Writes  uint64        `json:"writes"` // of IOs
	Elapsed time.Duration `json:"elapsed_ns"`
	IOPS    float64       `json:"iops"`
	Min     time.Duration `json:"min_ns"`
	Mean    time.Duration `json:"mean_ns"`
	P50     time.Duration `json:"p50_ns"`
	P99     time.Duration `json:"p99_ns"`
	P999    time.Duration `json:"p999_ns"`
	Max     time.Duration `json:"max_ns"`
	Checked uint64        `json:"checked"` // reads whose data BenchOptions.Check accepted
}

func (r BenchResult) String() string {
	s := fmt.Sprintf("%d I/Os in %s: %.0f IOPS, p50 %s, p99 %s, p99.9 %s, max %s", r.IOs, r.Elapsed.Round(time.Millisecond), r.IOPS, r.P50, r.P99, r.P999, r.Max)
	if r.Writes > 0 {
		s += fmt.Sprintf(", %d writes", r.Writes)
	}
	if r.Checked > 0 {
		s += fmt.Sprintf(", %d reads checked", r.Checked)
	}
	return s
}
