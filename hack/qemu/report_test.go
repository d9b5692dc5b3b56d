package qemu

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestGoTests(t *testing.T) {
	out := strings.Join([]string{
		"=== RUN   TestA",
		"--- PASS: TestA (1.25s)",
		"=== RUN   TestB",
		"=== RUN   TestB/sub",
		"    b_test.go:9: boom",
		"    --- FAIL: TestB/sub (0.00s)",
		"--- FAIL: TestB (0.00s)",
		"=== RUN   TestC",
		"--- SKIP: TestC (0.00s)",
		"    c_test.go:3: not here",
		"=== RUN   TestD",
		"panic: oops",
	}, "\n")
	got := GoTests(out)
	want := []struct{ name, result, has string }{
		{"TestA", "PASS", ""}, {"TestB", "FAIL", "boom"}, {"TestC", "SKIP", "not here"}, {"TestD", "", "panic: oops"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d tests: %+v", len(got), got)
	}
	if got[0].Elapsed != 1250*time.Millisecond || got[3].Elapsed != 0 {
		t.Errorf("elapsed: TestA %v (want 1.25s), TestD %v (no result line: want 0)", got[0].Elapsed, got[3].Elapsed)
	}
	if subs := subtests(got[1]); len(subs) != 1 || subs[0].Name != "TestB/sub" || subs[0].Result != "FAIL" {
		t.Errorf("subtests(TestB) = %+v", subs)
	}
	for i, w := range want {
		if got[i].Name != w.name || got[i].Result != w.result || !strings.Contains(got[i].Output, w.has) {
			t.Errorf("test %d = %+v, want %s %s containing %q", i, got[i], w.name, w.result, w.has)
		}
	}
}

func TestParseFrames(t *testing.T) {
	in := "noise\n@@@vfioctl-begin a\nline1\r\n@@@vfioctl-end a 3\n@@@vfioctl-begin b\nhalf"
	res := parse(strings.NewReader(in))
	if res.Done || len(res.Commands) != 2 || res.Commands[0].ExitCode != 3 || res.Commands[0].Output != "line1\n" || res.Commands[1].ExitCode != -1 {
		t.Fatalf("parse = %+v", res)
	}
}

// TestSummary: a boot's report counts tests and subtests by result and
// gives each skip's reason, and names the slowest tests.
func TestSummary(t *testing.T) {
	out := strings.Join([]string{
		"=== RUN   TestA",
		"=== RUN   TestA/one",
		"    a_test.go:5: one logs",
		"=== RUN   TestA/two",
		"    a_test.go:7: cdev: this kernel lacks it",
		"--- PASS: TestA (0.40s)",
		"    --- PASS: TestA/one (0.30s)",
		"    --- SKIP: TestA/two (0.00s)",
		"=== RUN   TestB",
		"--- FAIL: TestB (12.06s)",
		"=== RUN   TestC",
		"--- SKIP: TestC (0.00s)",
		"    c_test.go:3: no nvme here",
	}, "\n")
	got := summary(GoTests(out))
	want := "2 passed, 2 skipped, 1 failed; slowest: TestB 12.1s, TestA 0.4s\n  skipped TestA/two: a_test.go:7: cdev: this kernel lacks it\n  skipped TestC: c_test.go:3: no nvme here"
	if got != want {
		t.Errorf("summary:\n%s\nwant:\n%s", got, want)
	}
}

// TestMachineFailed: Run boots again when the machine failed (a stalled
// vCPU, or QEMU dying of a fault, named with the guest test it died in),
// not when QEMU exited with an error or was killed, nor for a test's own
// failure.
func TestMachineFailed(t *testing.T) {
	dir := t.TempDir()
	clean := filepath.Join(dir, "clean.console.log")
	stalled := filepath.Join(dir, "stalled.console.log")
	os.WriteFile(clean, []byte("[    0.000000] Linux version 6.12.118\n"), 0o644)
	os.WriteFile(stalled, []byte("[   45.8] rcu: INFO: rcu_sched detected stalls on CPUs/tasks:\n"), 0o644)
	died := func(script string) error {
		err := exec.Command("/bin/sh", "-c", script).Run()
		return fmt.Errorf("qemu: %w: qemu-system-x86_64: warning: nic e1000e.0 has no peer", err)
	}
	out := "=== RUN   TestA\n--- PASS: TestA (0.10s)\n=== RUN   TestHotResetSharedBus\n=== RUN   TestHotResetSharedBus/group\n"
	for _, c := range []struct {
		name, console string
		err           error
		want          string
	}{
		{"SIGSEGV", clean, died("kill -SEGV $$"), "QEMU itself died of segmentation fault during guest test TestHotResetSharedBus/group"},
		{"SIGABRT", clean, died("kill -ABRT $$"), "QEMU itself died of aborted during guest test TestHotResetSharedBus/group"},
		{"stalled vCPU", stalled, nil, `the guest's kernel reported a stalled vCPU ("rcu: INFO: rcu_sched detected stalls on CPUs/tasks:")`},
		{"SIGKILL", clean, died("kill -KILL $$"), ""},
		{"exit status 1", clean, died("exit 1"), ""},
		{"guest stopped", clean, errors.New("guest stopped before running every command"), ""},
		{"a test failed", clean, nil, ""},
	} {
		res := &Result{ConsoleLog: c.console, Err: c.err, Commands: []CommandResult{{Name: "./tests/e2e/guest", Output: out}}}
		if got := machineFailed(res); got != c.want {
			t.Errorf("%s: machineFailed = %q, want %q", c.name, got, c.want)
		}
	}
}
