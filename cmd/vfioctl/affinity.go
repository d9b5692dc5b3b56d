package main

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// pinProcess moves every thread of this process to cpus (as taskset -a -p
// does); threads created later inherit it from the thread that creates
// them. `nvme bench --cpu` pins its pollers with the library and the rest
// of the runtime (sysmon, the threads that take a preempted poller's P)
// here: woken on another CPU, they would take host time from an emulated
// device and disturb a CPU the user meant to leave idle. A thread that
// exits meanwhile is skipped.
func pinProcess(cpus []int) error {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
			return fmt.Errorf("pinning thread %d to CPUs %v: %w", tid, cpus, err)
		}
	}
	return nil
}
