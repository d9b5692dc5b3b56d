package vfio

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMigrationPath: the walks the kernel's own comment on
// vfio_mig_get_next_state lists (all optional features offered), the
// shorter ones without P2P or PRE_COPY, and the refusals.
func TestMigrationPath(t *testing.T) {
	all := MigrationStopCopy | MigrationP2P | MigrationPreCopy
	for _, c := range []struct {
		from, to MigState
		flags    MigrationFlags
		want     []MigState
	}{
		{MigPreCopy, MigStopCopy, all, []MigState{MigPreCopyP2P, MigStopCopy}},
		{MigPreCopy, MigResuming, all, []MigState{MigRunning, MigRunningP2P, MigStop, MigResuming}},
		{MigResuming, MigPreCopy, all, []MigState{MigStop, MigRunningP2P, MigRunning, MigPreCopy}},
		{MigRunning, MigStopCopy, all, []MigState{MigRunningP2P, MigStop, MigStopCopy}},
		{MigStopCopy, MigRunning, all, []MigState{MigStop, MigRunningP2P, MigRunning}},
		{MigRunning, MigRunning, all, nil},
		// Without P2P the kernel skips RUNNING_P2P: RUNNING and STOP are
		// one arc apart.
		{MigRunning, MigStopCopy, MigrationStopCopy, []MigState{MigStop, MigStopCopy}},
		{MigRunning, MigResuming, MigrationStopCopy, []MigState{MigStop, MigResuming}},
		{MigPreCopy, MigStopCopy, MigrationStopCopy | MigrationPreCopy, []MigState{MigStopCopy}},
	} {
		got, err := MigrationPath(c.from, c.to, c.flags)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("%s -> %s with %s: %v, %v; want %v", c.from, c.to, c.flags, got, err, c.want)
		}
	}
	for _, c := range []struct {
		from, to MigState
		flags    MigrationFlags
		says     string
	}{
		{MigStopCopy, MigPreCopy, all, "blocks the move from STOP_COPY"},
		{MigStopCopy, MigPreCopyP2P, all, "blocks the move from STOP_COPY"},
		{MigRunning, MigPreCopy, MigrationStopCopy, "does not offer PRE_COPY (it needs STOP_COPY|PRE_COPY)"},
		{MigRunning, MigRunningP2P, MigrationStopCopy | MigrationPreCopy, "does not offer RUNNING_P2P"},
		{MigError, MigRunning, all, "only by a reset"},
		{MigRunning, MigError, all, "not a state to ask for"},
		{MigRunning, MigState(8), all, "no such state"},
	} {
		_, err := MigrationPath(c.from, c.to, c.flags)
		if !errors.Is(err, unix.EINVAL) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s -> %s with %s: %v; want EINVAL saying %q", c.from, c.to, c.flags, err, c.says)
		}
	}
}

func TestMigStateNames(t *testing.T) {
	for s := MigError; s < migStates; s++ {
		for _, name := range []string{s.String(), strings.ToLower(strings.ReplaceAll(s.String(), "_", "-"))} {
			if got, err := ParseMigState(name); err != nil || got != s {
				t.Errorf("ParseMigState(%q) = %v, %v; want %v", name, got, err, s)
			}
		}
	}
	if _, err := ParseMigState("paused"); err == nil || !strings.Contains(err.Error(), "stop_copy") {
		t.Errorf("ParseMigState(paused): %v; want an error listing the states", err)
	}
	if f := MigrationStopCopy | MigrationPreCopy | 0x10; f.String() != "STOP_COPY|PRE_COPY|0x10" {
		t.Errorf("flags %s", f)
	}
}
