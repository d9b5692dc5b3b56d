package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// generated are the files `make docs` writes from the CLI definition.
var generated = map[string][]string{
	"completions/vfioctl.bash": {"completion", "bash"},
	"completions/_vfioctl":     {"completion", "zsh"},
	"completions/vfioctl.fish": {"completion", "fish"},
	"docs/man/vfioctl.8":       {"man"},
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	app := newApp()
	var out strings.Builder
	app.Writer = &out
	if err := app.Run(append([]string{"vfioctl"}, args...)); err != nil {
		t.Fatalf("vfioctl %v: %v", args, err)
	}
	return out.String()
}

// TestGeneratedFilesMatchCLI: the checked-in completions and manual page
// are what the CLI generates now; a command or flag added without
// `make docs` fails here.
func TestGeneratedFilesMatchCLI(t *testing.T) {
	for file, args := range generated {
		b, err := os.ReadFile(filepath.Join("..", "..", file))
		if err != nil {
			t.Fatal(err)
		}
		if got := run(t, args...); string(b) != got {
			t.Errorf("%s differs from `vfioctl %s`: run make docs", file, strings.Join(args, " "))
		}
	}
	for _, want := range []string{"persist", "cdi", "--owner", "--policy"} {
		if !strings.Contains(run(t, "man"), want) {
			t.Errorf("the manual page does not mention %s", want)
		}
	}
}

// completionCases: a command line (the cursor at its end) and the
// candidates every shell must offer. PCI addresses come from sysfs.
var completionCases = []struct {
	line string
	want []string
}{
	{"vfioctl bi", []string{"bind"}},
	{"vfioctl persist ", []string{"apply", "install", "list"}},
	{"vfioctl -v cdi ", []string{"generate", "list"}},
	{"vfioctl cdi list --", []string{"--dir", "--help", "--json"}},
	{"vfioctl bind --ow", []string{"--owner"}},
	{"vfioctl unbind --p", []string{"--persist"}},
	{"vfioctl nvme r", []string{"read"}},
}

func pciAddrs(t *testing.T, prefix string) []string {
	ents, _ := os.ReadDir("/sys/bus/pci/devices")
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

func shellOrSkip(t *testing.T, sh string) string {
	p, err := exec.LookPath(sh)
	if err != nil {
		t.Skipf("%s is not installed (make deps installs it)", sh)
	}
	return p
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l != "" {
			out = append(out, strings.SplitN(l, "\t", 2)[0])
		}
	}
	sort.Strings(out)
	return out
}

// checkShell runs each case through a shell's completion and compares.
func checkShell(t *testing.T, complete func(line string) (string, error), addrsWhole bool) {
	cases := completionCases
	if a := pciAddrs(t, "0000:0"); len(a) > 0 {
		want := a
		if !addrsWhole { // bash replaces only what follows the last ':'
			want = nil
			for _, x := range a {
				want = append(want, strings.TrimPrefix(x, "0000:"))
			}
		}
		cases = append(cases, struct {
			line string
			want []string
		}{"vfioctl bind --group 0000:0", want})
	}
	for _, c := range cases {
		out, err := complete(c.line)
		if err != nil {
			t.Fatalf("%q: %v\n%s", c.line, err, out)
		}
		want := append([]string(nil), c.want...)
		sort.Strings(want)
		if got := lines(out); !reflect.DeepEqual(got, want) {
			t.Errorf("%q: got %q, want %q", c.line, got, want)
		}
	}
}

func TestBashCompletion(t *testing.T) {
	bash := shellOrSkip(t, "bash")
	script := run(t, "completion", "bash")
	checkShell(t, func(line string) (string, error) {
		cmd := exec.Command(bash, "--norc", "--noprofile", "-c", script+`
COMP_LINE=$1; COMP_POINT=${#1}; _vfioctl; printf '%s\n' "${COMPREPLY[@]}"`, "bash", line)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}, false)
}

func TestZshCompletion(t *testing.T) {
	zsh := shellOrSkip(t, "zsh")
	file := filepath.Join(t.TempDir(), "_vfioctl")
	if err := os.WriteFile(file, []byte(run(t, "completion", "zsh")), 0o644); err != nil {
		t.Fatal(err)
	}
	// compadd and _describe stand in for the completion system's own,
	// printing the candidates they are given.
	const harness = `compadd() { [[ $1 == -- ]] && shift; print -rl -- "$@"; }
_describe() { local arr=$4; print -rl -- ${${(P)arr}%%:*}; }
words=(${(z)1}); [[ $1 == *' ' ]] && words+=('')
CURRENT=${#words}; PREFIX=${words[-1]}
source $2 | while read -r c; do [[ $c == $PREFIX* ]] && print -r -- $c; done; true`
	checkShell(t, func(line string) (string, error) {
		out, err := exec.Command(zsh, "-f", "-c", harness, "zsh", line, file).CombinedOutput()
		return string(out), err
	}, true)
}

func TestFishCompletion(t *testing.T) {
	fish := shellOrSkip(t, "fish")
	file := filepath.Join(t.TempDir(), "vfioctl.fish")
	if err := os.WriteFile(file, []byte(run(t, "completion", "fish")), 0o644); err != nil {
		t.Fatal(err)
	}
	checkShell(t, func(line string) (string, error) {
		out, err := exec.Command(fish, "--no-config", "-c", "source $argv[1]; complete -C $argv[2]", file, line).CombinedOutput()
		return string(out), err
	}, true)
}
