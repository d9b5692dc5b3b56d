// Package allocs counts heap allocations exactly, for tests that claim a
// path allocates nothing. testing.AllocsPerRun divides with integers, so
// 199 allocations in 200 runs read as 0; Count returns the total.
package allocs

import "runtime"

// Count calls f once to warm it up, then n times on one P, and returns the
// number of heap allocations the n calls made in total (runtime.MemStats'
// Mallocs, which ReadMemStats makes exact by stopping the world).
func Count(n int, f func()) uint64 {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	f()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < n; i++ {
		f()
	}
	runtime.ReadMemStats(&after)
	return after.Mallocs - before.Mallocs
}
