// Package allocs counts heap allocations exactly, for tests that claim a
// path allocates nothing. testing.AllocsPerRun divides with integers, so
// 199 allocations in 200 runs read as 0; Count returns the total, and
// Where says which code made them.
package allocs

import (
	"fmt"
	"runtime"
	"sort"
	"strings"
)

// Count calls f once to warm it up, then n times on one P, and returns the
// number of heap allocations the n calls made in total (runtime.MemStats'
// Mallocs, which ReadMemStats makes exact by stopping the world). Mallocs
// counts every goroutine's, so a round is taken three times and the least
// is returned: a stray allocation of the runtime or the test framework
// lands in one round, one of f's own in every round.
func Count(n int, f func()) uint64 {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	f()
	least := ^uint64(0)
	for round := 0; round < 3 && least != 0; round++ {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := 0; i < n; i++ {
			f()
		}
		runtime.ReadMemStats(&after)
		least = min(least, after.Mallocs-before.Mallocs)
	}
	return least
}

// Where runs f n times with every allocation sampled and returns the call
// stacks that allocated during them, most allocations first, one line each
// ("count: innermost function file:line <- caller ..."), for a test to print
// when Count was not 0. Allocations of other goroutines show too, which is
// how a background allocation is told from the code's own.
func Where(n int, f func()) []string {
	defer func(rate int) { runtime.MemProfileRate = rate }(runtime.MemProfileRate)
	runtime.MemProfileRate = 1
	before := profile()
	for i := 0; i < n; i++ {
		f()
	}
	after := profile()
	type site struct {
		stack string
		n     int64
	}
	var sites []site
	for stack, objs := range after {
		if d := objs - before[stack]; d > 0 {
			sites = append(sites, site{stack, d})
		}
	}
	sort.Slice(sites, func(i, j int) bool { return sites[i].n > sites[j].n })
	out := make([]string, len(sites))
	for i, s := range sites {
		out[i] = fmt.Sprintf("%d: %s", s.n, s.stack)
	}
	return out
}

// profile is the allocation profile by stack: objects allocated so far.
// The runtime publishes a profile two garbage collections late.
func profile() map[string]int64 {
	runtime.GC()
	runtime.GC()
	var recs []runtime.MemProfileRecord
	n, _ := runtime.MemProfile(nil, true)
	for {
		recs = make([]runtime.MemProfileRecord, n+50)
		var ok bool
		if n, ok = runtime.MemProfile(recs, true); ok {
			recs = recs[:n]
			break
		}
	}
	out := map[string]int64{}
	for _, r := range recs {
		frames := runtime.CallersFrames(r.Stack())
		var parts []string
		mine := false // made by profile itself, at any depth
		for fr, more := frames.Next(); ; fr, more = frames.Next() {
			mine = mine || fr.Function == "github.com/vfioctl/vfioctl/internal/allocs.profile"
			if len(parts) < 6 && !strings.HasPrefix(fr.Function, "runtime.") {
				parts = append(parts, fmt.Sprintf("%s %s:%d", fr.Function, fr.File, fr.Line))
			}
			if !more {
				break
			}
		}
		if !mine && len(parts) > 0 {
			out[strings.Join(parts, " <- ")] += r.AllocObjects
		}
	}
	return out
}
