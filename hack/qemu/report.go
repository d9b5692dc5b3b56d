package qemu

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Run boots spec and reports every top-level test of the guest's test
// binaries as a subtest of t, so a guest failure fails the host run with
// the guest's output. A VM that hangs, panics or never finishes fails t with
// the tail of the console log, which is kept under ArtifactDir with the
// guest's output (kept for passing boots too with VFIOCTL_E2E_KEEP=1).
// A boot whose machine failed (a stalled vCPU, QEMU dying of a fault) is
// booted once more, on the NVMe image as it was before the first.
func Run(t *testing.T, spec Spec) *Result {
	t.Helper()
	res, err := bootRetrying(spec, func(s Spec) (*Result, error) { return Boot(context.Background(), s) }, t.Logf)
	if err != nil {
		t.Fatalf("boot %s/%s: %v", spec.Kernel, spec.Profile, err)
	}
	kernel := "Linux " + res.Kernel
	if res.Kernel == "" {
		kernel = "kernel unknown (init never spoke)"
	}
	t.Logf("boot %s/%s: %s: %d commands in %s", spec.Kernel, spec.Profile, kernel, len(res.Commands), res.Elapsed.Round(100_000_000))
	for _, c := range res.Commands {
		if !contains(spec.Packages, c.Name) {
			continue
		}
		tests := GoTests(c.Output)
		for _, gt := range tests {
			t.Run(gt.Name, func(t *testing.T) {
				for _, sub := range subtests(gt) {
					t.Run(strings.TrimPrefix(sub.Name, gt.Name+"/"), func(t *testing.T) {
						if sub.Result == "FAIL" {
							t.Errorf("guest subtest %s FAIL (output above in %s)", sub.Name, gt.Name)
						} else if sub.Result == "SKIP" {
							t.Skip()
						}
					})
				}
				switch gt.Result {
				case "PASS":
				case "SKIP":
					t.Skip(strings.TrimSpace(gt.Output))
				default:
					t.Errorf("guest test %s %s:\n%s", gt.Name, orNone(gt.Result), gt.Output)
				}
			})
		}
		t.Logf("%s in %s/%s: %s", c.Name, spec.Kernel, spec.Profile, summary(tests))
		if c.ExitCode != 0 && !anyFailed(tests) {
			t.Errorf("guest %s exited %d without a failed test (panic or timeout?):\n%s", c.Name, c.ExitCode, tail(c.Output, 60))
		}
		if len(tests) == 0 && c.ExitCode == 0 && !strings.Contains(c.Output, " ns/op") && !filtered(spec.TestArgs) {
			t.Errorf("guest %s ran no test:\n%s", c.Name, c.Output)
		}
	}
	if res.Err != nil || t.Failed() || os.Getenv("VFIOCTL_E2E_KEEP") != "" {
		saveResults(res, "")
	} else {
		os.Remove(res.ConsoleLog) // a passing boot's: nothing to look into
	}
	if res.Err != nil {
		b, _ := os.ReadFile(res.ConsoleLog)
		t.Errorf("VM %s/%s failed: %v\nconsole log: %s\n--- last lines ---\n%s", spec.Kernel, spec.Profile, res.Err, res.ConsoleLog, tail(string(b), 40))
	}
	return res
}

// GoTest is one top-level test as `go test -v` reported it.
type GoTest struct {
	Name    string
	Result  string // PASS, FAIL, SKIP, or "" when the output stops first
	Output  string
	Elapsed time.Duration // as its result line says; 0 when it has none
}

// GoTests splits `go test -v` output into its top-level tests.
func GoTests(out string) []GoTest {
	var tests []GoTest
	idx := map[string]int{}
	cur := -1
	for _, line := range strings.Split(out, "\n") {
		if name, ok := strings.CutPrefix(line, "=== RUN   "); ok && !strings.Contains(name, "/") {
			idx[name] = len(tests)
			tests = append(tests, GoTest{Name: name})
			cur = idx[name]
			continue
		}
		for _, r := range []string{"PASS", "FAIL", "SKIP"} {
			if rest, ok := strings.CutPrefix(line, "--- "+r+": "); ok {
				name, took, _ := strings.Cut(rest, " ")
				if i, ok := idx[name]; ok {
					tests[i].Result = r
					tests[i].Elapsed, _ = time.ParseDuration(strings.Trim(took, "()"))
					cur = -1
				}
			}
		}
		if cur >= 0 {
			tests[cur].Output += line + "\n"
		} else if n := len(tests); n > 0 && (strings.HasPrefix(line, "    ") || tests[n-1].Result == "FAIL") {
			// Output after a result line: a SKIP reason, or the panic
			// and stack that follow a failed test.
			tests[n-1].Output += line + "\n"
		}
	}
	return tests
}

// subtests lists the results of gt's subtests, from the "--- PASS: X/y"
// lines inside its output.
// A skipped subtest's Output is its reason: the last line it logged
// (go test -v streams a subtest's log under its "=== RUN" line and prints
// the results of a test's subtests together after it).
func subtests(gt GoTest) []GoTest {
	var out []GoTest
	logged := map[string]string{}
	cur := ""
	for _, line := range strings.Split(gt.Output, "\n") {
		if name, ok := strings.CutPrefix(line, "=== RUN   "); ok {
			cur = name
			continue
		}
		if name, ok := strings.CutPrefix(line, "=== CONT  "); ok {
			cur = name
			continue
		}
		l := strings.TrimLeft(line, " ")
		result := false
		for _, r := range []string{"PASS", "FAIL", "SKIP"} {
			if rest, ok := strings.CutPrefix(l, "--- "+r+": "); ok && l != line {
				result = true
				name, _, _ := strings.Cut(rest, " ")
				if strings.HasPrefix(name, gt.Name+"/") {
					sub := GoTest{Name: name, Result: r}
					if r == "SKIP" {
						sub.Output = logged[name]
					}
					out = append(out, sub)
				}
			}
		}
		if !result && cur != "" && strings.TrimSpace(l) != "" {
			logged[cur] = strings.TrimSpace(l)
		}
	}
	return out
}

// summary counts a boot's guest tests and subtests by result and lists
// the skipped ones with their reasons, so a skip that should not happen
// is seen in the report of the boot that made it.
func summary(tests []GoTest) string {
	count, total := map[string]int{}, 0
	var skipped []string
	add := func(gt GoTest) {
		count[gt.Result]++
		total++
		if gt.Result == "SKIP" {
			reason, _, _ := strings.Cut(strings.TrimSpace(gt.Output), "\n")
			skipped = append(skipped, "  skipped "+gt.Name+": "+reason)
		}
	}
	for _, gt := range tests {
		add(gt)
		for _, sub := range subtests(gt) {
			add(sub)
		}
	}
	s := fmt.Sprintf("%d passed, %d skipped, %d failed", count["PASS"], count["SKIP"], total-count["PASS"]-count["SKIP"])
	if slow := slowest(tests, 5); slow != "" {
		s += "; slowest: " + slow
	}
	if len(skipped) > 0 {
		s += "\n" + strings.Join(skipped, "\n")
	}
	return s
}

// slowest names the n top-level tests that took longest, with their
// times as the guest measured them: where a boot's minutes go.
func slowest(tests []GoTest, n int) string {
	byTime := slices.Clone(tests)
	slices.SortStableFunc(byTime, func(a, b GoTest) int { return cmp.Compare(b.Elapsed, a.Elapsed) })
	var l []string
	for _, gt := range byTime[:min(n, len(byTime))] {
		if gt.Elapsed > 0 {
			l = append(l, fmt.Sprintf("%s %.1fs", gt.Name, gt.Elapsed.Seconds()))
		}
	}
	return strings.Join(l, ", ")
}

// filtered reports whether the run was narrowed with -test.run, when a
// package may rightly match nothing.
func filtered(args []string) bool {
	for _, a := range args {
		if strings.HasPrefix(a, "-test.run=") {
			return true
		}
	}
	return false
}

func anyFailed(ts []GoTest) bool {
	for _, t := range ts {
		if t.Result != "PASS" && t.Result != "SKIP" {
			return true
		}
	}
	return false
}

// machineFailed says why res's boot failed as a machine rather than in
// a test, "" if it did not: the guest kernel reported a stalled vCPU (seen
// once under TCG on a 2-core host: a vCPU stopped taking its timer and
// MSIs to it were lost from then on, taking every later test down), or
// QEMU itself died of a fault (QEMU 7.2 under amd-iommu, twice in CI runs
// of make test: a SIGSEGV during TestCLINVMe once and during
// TestHotResetSharedBus once; each boot passed when run again). A guest
// that crashes QEMU every time still fails: Run boots again only once.
func machineFailed(res *Result) string {
	if stall := Stalled(res.ConsoleLog); stall != "" {
		return fmt.Sprintf("the guest's kernel reported a stalled vCPU (%q)", stall)
	}
	var exit *exec.ExitError
	if !errors.As(res.Err, &exit) {
		return ""
	}
	ws, ok := exit.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() {
		return ""
	}
	switch sig := ws.Signal(); sig {
	case syscall.SIGSEGV, syscall.SIGBUS, syscall.SIGABRT, syscall.SIGILL, syscall.SIGFPE:
		during := "before any guest test"
		if n := len(res.Commands); n > 0 {
			out := res.Commands[n-1].Output
			if i := strings.LastIndex(out, "=== RUN   "); i >= 0 {
				name, _, _ := strings.Cut(out[i+len("=== RUN   "):], "\n")
				during = "during guest test " + name
			}
		}
		return fmt.Sprintf("QEMU itself died of %v %s", sig, during)
	}
	return ""
}

// Stalled is the first line of a console log in which the guest kernel
// reports an RCU stall (a CPU that stopped responding), or "".
func Stalled(consoleLog string) string {
	b, err := os.ReadFile(consoleLog)
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if i := strings.Index(l, "rcu: INFO: "); i >= 0 && strings.Contains(l, "detected stalls") {
			return strings.TrimSpace(l[i:])
		}
	}
	return ""
}

func saveResults(res *Result, suffix string) {
	var b strings.Builder
	for _, c := range res.Commands {
		b.WriteString("### " + c.Name + "\n" + c.Output)
	}
	_ = os.WriteFile(strings.TrimSuffix(res.ConsoleLog, ".console.log")+suffix+".results.log", []byte(b.String()), 0o644)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func orNone(s string) string {
	if s == "" {
		return "did not finish"
	}
	return s
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
