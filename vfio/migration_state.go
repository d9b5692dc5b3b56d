package vfio

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/uapi"
)

// MigState is a device's migration state (enum vfio_device_mig_state).
type MigState uint32

// The migration states of VFIO's v2 protocol (Linux 5.18; PRE_COPY 6.2).
const (
	MigError      MigState = uapi.VFIO_DEVICE_STATE_ERROR
	MigStop       MigState = uapi.VFIO_DEVICE_STATE_STOP
	MigRunning    MigState = uapi.VFIO_DEVICE_STATE_RUNNING
	MigStopCopy   MigState = uapi.VFIO_DEVICE_STATE_STOP_COPY
	MigResuming   MigState = uapi.VFIO_DEVICE_STATE_RESUMING
	MigRunningP2P MigState = uapi.VFIO_DEVICE_STATE_RUNNING_P2P
	MigPreCopy    MigState = uapi.VFIO_DEVICE_STATE_PRE_COPY
	MigPreCopyP2P MigState = uapi.VFIO_DEVICE_STATE_PRE_COPY_P2P
)

const migStates = uapi.VFIO_DEVICE_STATE_NR

var migStateNames = [migStates]string{"ERROR", "STOP", "RUNNING", "STOP_COPY", "RESUMING", "RUNNING_P2P", "PRE_COPY", "PRE_COPY_P2P"}

// String is the kernel's name of the state, e.g. STOP_COPY.
func (s MigState) String() string {
	if s < migStates {
		return migStateNames[s]
	}
	return fmt.Sprintf("MigState(%d)", uint32(s))
}

// ParseMigState reads a state's name in either case, with - or _
// (stop-copy, STOP_COPY).
func ParseMigState(name string) (MigState, error) {
	n := strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
	for i, s := range migStateNames {
		if s == n {
			return MigState(i), nil
		}
	}
	return 0, fmt.Errorf("vfio: unknown migration state %q (want one of %s)", name, strings.ToLower(strings.Join(migStateNames[:], ", ")))
}

// MigrationFlags are what VFIO_DEVICE_FEATURE_MIGRATION reports a device
// offers: STOP_COPY always, P2P and PRE_COPY optionally.
type MigrationFlags uint64

// The migration features a device may offer.
const (
	MigrationStopCopy MigrationFlags = uapi.VFIO_MIGRATION_STOP_COPY
	MigrationP2P      MigrationFlags = uapi.VFIO_MIGRATION_P2P
	MigrationPreCopy  MigrationFlags = uapi.VFIO_MIGRATION_PRE_COPY
)

func (f MigrationFlags) String() string {
	var names []string
	for _, n := range []struct {
		f    MigrationFlags
		name string
	}{{MigrationStopCopy, "STOP_COPY"}, {MigrationP2P, "P2P"}, {MigrationPreCopy, "PRE_COPY"}} {
		if f&n.f != 0 {
			names = append(names, n.name)
			f &^= n.f
		}
	}
	if f != 0 {
		names = append(names, fmt.Sprintf("%#x", uint64(f)))
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, "|")
}

// migStep is the kernel's table of the next state from one state toward
// another (vfio_mig_get_next_state in drivers/vfio/vfio_main.c, Linux
// 6.2 and later): the arcs every driver implements, and the longer moves
// broken into them. migStep[from][to] == MigError: no way.
var migStep = [migStates][migStates]MigState{
	MigStop: {MigStop: MigStop, MigRunning: MigRunningP2P, MigPreCopy: MigRunningP2P, MigPreCopyP2P: MigRunningP2P,
		MigStopCopy: MigStopCopy, MigResuming: MigResuming, MigRunningP2P: MigRunningP2P},
	MigRunning: {MigStop: MigRunningP2P, MigRunning: MigRunning, MigPreCopy: MigPreCopy, MigPreCopyP2P: MigRunningP2P,
		MigStopCopy: MigRunningP2P, MigResuming: MigRunningP2P, MigRunningP2P: MigRunningP2P},
	MigPreCopy: {MigStop: MigRunning, MigRunning: MigRunning, MigPreCopy: MigPreCopy, MigPreCopyP2P: MigPreCopyP2P,
		MigStopCopy: MigPreCopyP2P, MigResuming: MigRunning, MigRunningP2P: MigRunning},
	MigPreCopyP2P: {MigStop: MigRunningP2P, MigRunning: MigRunningP2P, MigPreCopy: MigPreCopy, MigPreCopyP2P: MigPreCopyP2P,
		MigStopCopy: MigStopCopy, MigResuming: MigRunningP2P, MigRunningP2P: MigRunningP2P},
	MigStopCopy: {MigStop: MigStop, MigRunning: MigStop, MigStopCopy: MigStopCopy, MigResuming: MigStop, MigRunningP2P: MigStop},
	MigResuming: {MigStop: MigStop, MigRunning: MigStop, MigPreCopy: MigStop, MigPreCopyP2P: MigStop,
		MigStopCopy: MigStop, MigResuming: MigResuming, MigRunningP2P: MigStop},
	MigRunningP2P: {MigStop: MigStop, MigRunning: MigRunning, MigPreCopy: MigRunning, MigPreCopyP2P: MigPreCopyP2P,
		MigStopCopy: MigStop, MigResuming: MigStop, MigRunningP2P: MigRunningP2P},
}

// migNeeds is the flags a device must offer for a state to exist on it.
var migNeeds = [migStates]MigrationFlags{
	MigError:      ^MigrationFlags(0),
	MigStop:       MigrationStopCopy,
	MigRunning:    MigrationStopCopy,
	MigStopCopy:   MigrationStopCopy,
	MigResuming:   MigrationStopCopy,
	MigRunningP2P: MigrationStopCopy | MigrationP2P,
	MigPreCopy:    MigrationStopCopy | MigrationPreCopy,
	MigPreCopyP2P: MigrationStopCopy | MigrationP2P | MigrationPreCopy,
}

func (f MigrationFlags) offers(s MigState) bool { return s < migStates && f&migNeeds[s] == migNeeds[s] }

// MigrationPath is the walk the kernel takes from one state to another on
// a device offering flags: each state it passes through, the last being
// to (empty when from == to). A state the flags do not offer is skipped
// over, as the kernel skips it. It fails, wrapping unix.EINVAL as the
// kernel does, when either state does not exist on the device or no walk
// leads there (STOP_COPY to PRE_COPY or PRE_COPY_P2P: the kernel blocks
// both, since the pre-copy data would be lost; out of ERROR only a reset
// leads).
func MigrationPath(from, to MigState, flags MigrationFlags) ([]MigState, error) {
	fail := func(why string) ([]MigState, error) {
		return nil, fmt.Errorf("vfio: no migration path from %s to %s with %s: %s: %w", from, to, flags, why, unix.EINVAL)
	}
	switch {
	case from >= migStates || to >= migStates:
		return fail("no such state")
	case from == MigError:
		return fail("a device in ERROR leaves it only by a reset (VFIO_DEVICE_RESET), which returns it to RUNNING")
	case to == MigError:
		return fail("ERROR is where the kernel puts a device, not a state to ask for")
	case !flags.offers(from):
		return fail(fmt.Sprintf("the device cannot be in %s", from))
	case !flags.offers(to):
		return fail(fmt.Sprintf("the device does not offer %s (it needs %s)", to, migNeeds[to]))
	}
	var path []MigState
	for cur := from; cur != to; {
		next := migStep[cur][to]
		for next != MigError && !flags.offers(next) {
			next = migStep[next][to]
		}
		if next == MigError {
			return fail(fmt.Sprintf("the kernel blocks the move from %s (its data would be lost)", cur))
		}
		path = append(path, next)
		cur = next
		if len(path) > int(migStates) {
			return fail("the walk does not end") // not with the kernel's table
		}
	}
	return path, nil
}
