package e2e

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// benchRow is one benchmark's results over the rounds of a run: ns/op and
// allocs/op per round, in the order the rounds ran.
type benchRow struct {
	name   string
	ns     []float64
	allocs []float64
}

// parseBenchLines collects `go test -bench` result lines ("BenchmarkX/y-2
// 20335 13563 ns/op 0 B/op 0 allocs/op"), one row per benchmark named
// without its -GOMAXPROCS suffix, in the order each first appears. With
// -test.count=N each row has N rounds.
func parseBenchLines(out string) []*benchRow {
	var rows []*benchRow
	byName := map[string]*benchRow{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		r := byName[name]
		if r == nil {
			r = &benchRow{name: name}
			byName[name] = r
			rows = append(rows, r)
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "ns/op":
				r.ns = append(r.ns, v)
			case "allocs/op":
				r.allocs = append(r.allocs, v)
			}
		}
	}
	return rows
}

// maxOf is the largest of v, 0 for none.
func maxOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	return slices.Max(v)
}

// median is the middle of v (the mean of the middle two for an even
// count), 0 for none.
func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// apiVersusRaw is the README's map+unmap table from rows: for each
// "<prefix>/<mode>/api" with a ".../raw" twin, the medians of their
// rounds (with the range), the median of the per-round ratios api/raw
// (round k of one against round k of the other: the rounds of a -count
// run interleave the modes) and the most allocations any api round made.
func apiVersusRaw(rows []*benchRow) ([]string, error) {
	byName := map[string]*benchRow{}
	for _, r := range rows {
		byName[r.name] = r
	}
	lines := []string{
		"| mode | API ns/op, median (min–max) | raw ns/op, median (min–max) | API/raw, median of rounds | allocs/op |",
		"|---|---|---|---|---|",
	}
	for _, api := range rows {
		base, ok := strings.CutSuffix(api.name, "/api")
		if !ok {
			continue
		}
		raw := byName[base+"/raw"]
		if raw == nil {
			return nil, fmt.Errorf("%s has no %s/raw", api.name, base)
		}
		if len(api.ns) == 0 || len(api.ns) != len(raw.ns) {
			return nil, fmt.Errorf("%s: %d rounds, %s/raw: %d", api.name, len(api.ns), base, len(raw.ns))
		}
		ratios := make([]float64, len(api.ns))
		for i := range api.ns {
			ratios[i] = api.ns[i] / raw.ns[i]
		}
		mode := base[strings.LastIndexByte(base, '/')+1:]
		lines = append(lines, fmt.Sprintf("| %s | %.0f (%.0f–%.0f) | %.0f (%.0f–%.0f) | %.2f | %.0f |", mode,
			median(api.ns), slices.Min(api.ns), slices.Max(api.ns), median(raw.ns), slices.Min(raw.ns), slices.Max(raw.ns),
			median(ratios), maxOf(api.allocs)))
	}
	if len(lines) == 2 {
		return nil, fmt.Errorf("no api/raw benchmark pairs")
	}
	return lines, nil
}

// TestAPIVersusRaw: the summary pairs each api benchmark with its raw twin
// round by round and refuses output it cannot pair.
func TestAPIVersusRaw(t *testing.T) {
	out := `goos: linux
BenchmarkMapUnmap4K/vfio_type1_iommu/api-2   100  12000 ns/op  0 B/op  0 allocs/op
BenchmarkMapUnmap4K/vfio_type1_iommu/raw-2   100  10000 ns/op  0 B/op  0 allocs/op
BenchmarkMapUnmap4K/iommufd/api-2            100  30000 ns/op  8 B/op  1 allocs/op
BenchmarkMapUnmap4K/iommufd/raw-2            100  20000 ns/op  0 B/op  0 allocs/op
BenchmarkMap256M/one-call-2                   10  9000000 ns/op  27416.12 MB/s  0 B/op  0 allocs/op
BenchmarkMapUnmap4K/vfio_type1_iommu/api-2   100  13000 ns/op  0 B/op  0 allocs/op
BenchmarkMapUnmap4K/vfio_type1_iommu/raw-2   100  13000 ns/op  0 B/op  0 allocs/op
BenchmarkMapUnmap4K/iommufd/api-2            100  20000 ns/op  0 B/op  0 allocs/op
BenchmarkMapUnmap4K/iommufd/raw-2            100  20000 ns/op  0 B/op  0 allocs/op
BenchmarkMapUnmap4K/vfio_type1_iommu/api-2   100  14000 ns/op  0 B/op  0 allocs/op
BenchmarkMapUnmap4K/vfio_type1_iommu/raw-2   100  10000 ns/op  0 B/op  0 allocs/op
BenchmarkMapUnmap4K/iommufd/api-2            100  22000 ns/op  0 B/op  0 allocs/op
BenchmarkMapUnmap4K/iommufd/raw-2            100  20000 ns/op  0 B/op  0 allocs/op
PASS
`
	rows := parseBenchLines(out)
	if len(rows) != 5 || rows[4].name != "BenchmarkMap256M/one-call" || len(rows[0].ns) != 3 {
		t.Fatalf("rows: %d, want 5 in order of appearance, three rounds of each map+unmap", len(rows))
	}
	got, err := apiVersusRaw(rows)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"| mode | API ns/op, median (min–max) | raw ns/op, median (min–max) | API/raw, median of rounds | allocs/op |",
		"|---|---|---|---|---|",
		// rounds 1.20, 1.00, 1.40: the median ratio, not the ratio of medians (13000/10000)
		"| vfio_type1_iommu | 13000 (12000–14000) | 10000 (10000–13000) | 1.20 | 0 |",
		"| iommufd | 22000 (20000–30000) | 20000 (20000–20000) | 1.10 | 1 |",
	}
	if !slices.Equal(got, want) {
		t.Errorf("table:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := apiVersusRaw(parseBenchLines("BenchmarkA/x/api-2 1 5 ns/op\n")); err == nil {
		t.Error("an api benchmark without its raw twin was summarized")
	}
	if _, err := apiVersusRaw(parseBenchLines("BenchmarkA/x/api-2 1 5 ns/op\nBenchmarkA/x/api-2 1 5 ns/op\nBenchmarkA/x/raw-2 1 5 ns/op\n")); err == nil {
		t.Error("an api benchmark with more rounds than its raw twin was summarized")
	}
}
