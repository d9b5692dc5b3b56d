package main

import (
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// TestPinProcess: after pinProcess every thread of the process, and one
// the runtime starts afterwards, runs only on the chosen CPU.
func TestPinProcess(t *testing.T) {
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		t.Fatal(err)
	}
	cpu := -1
	for c := 0; c < 1024 && cpu < 0; c++ {
		if old.IsSet(c) {
			cpu = c
		}
	}
	t.Cleanup(func() { pinAll(old) })
	if err := pinProcess([]int{cpu}); err != nil {
		t.Fatal(err)
	}
	// Blocked in a syscall, this goroutine's thread makes the runtime
	// start or wake another for the others.
	done := make(chan struct{})
	go func() { defer close(done); unix.Nanosleep(&unix.Timespec{Nsec: 20e6}, nil) }()
	<-done
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		tid, _ := strconv.Atoi(e.Name())
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(tid, &set); err != nil {
			continue // exited
		}
		if set.Count() != 1 || !set.IsSet(cpu) {
			t.Errorf("thread %d: %d CPUs allowed, want only CPU %d", tid, set.Count(), cpu)
		}
	}
}

// pinAll puts every thread back on set.
func pinAll(set unix.CPUSet) {
	ents, _ := os.ReadDir("/proc/self/task")
	for _, e := range ents {
		tid, _ := strconv.Atoi(e.Name())
		_ = unix.SchedSetaffinity(tid, &set)
	}
}
