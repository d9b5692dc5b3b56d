package kernel

import (
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// release is the running kernel's version as major, minor, patch.
var release = sync.OnceValue(func() [3]int {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return [3]int{}
	}
	return parseRelease(unix.ByteSliceToString(u.Release[:]))
})

// parseRelease reads "6.12.118-amd64" or "6.1" as its numbers.
func parseRelease(s string) [3]int {
	var v [3]int
	for i, part := range strings.SplitN(s, ".", 3) {
		end := strings.IndexFunc(part, func(r rune) bool { return r < '0' || r > '9' })
		if end >= 0 {
			part = part[:end]
		}
		v[i], _ = strconv.Atoi(part)
	}
	return v
}

// Before reports whether the running kernel is older than version
// ("6.2"): then a feature that version added is missing for that reason.
// An unreadable release counts as older.
func Before(version string) bool {
	have, want := release(), parseRelease(version)
	for i := range have {
		if have[i] != want[i] {
			return have[i] < want[i]
		}
	}
	return false
}
