package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestReorderArgs(t *testing.T) {
	app := newApp()
	for in, want := range map[string]string{
		"vfioctl info 0000:00:03.0 --json":                    "vfioctl info --json 0000:00:03.0",
		"vfioctl -v bind 00:03.0 --timeout 2s --group":        "vfioctl -v bind --timeout 2s --group 00:03.0",
		"vfioctl dma-test 00:03.0 --backend=cdev --size 8192": "vfioctl dma-test --backend=cdev --size 8192 00:03.0",
		"vfioctl list --class net":                            "vfioctl list --class net",
		"vfioctl info -- 00:03.0 --json":                      "vfioctl info -- 00:03.0 --json",
		"vfioctl bogus 1 --x":                                 "vfioctl bogus 1 --x",
		"vfioctl completion bash":                             "vfioctl completion bash",
	} {
		got := strings.Join(reorderArgs(app, strings.Fields(in)), " ")
		if got != want {
			t.Errorf("%q -> %q, want %q", in, got, want)
		}
	}
}

// Every kind of usage error exits 2: an unknown command, an unknown flag
// (before or after the argument), a missing or malformed address.
func TestUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{
		{"bogus"},
		{"list", "--bogus"},
		{"info", "0000:00:03.0", "--bogus"},
		{"info"},
		{"info", "not-an-address"},
		{"list", "--class", "nope"},
		{"--bogus", "list"},
	} {
		app := newApp()
		var out bytes.Buffer
		app.Writer, app.ErrWriter = &out, &out
		err := app.Run(reorderArgs(app, append([]string{"vfioctl"}, args...)))
		if err == nil || exitCode(err) != exitUsage {
			t.Errorf("vfioctl %s: err %v, exit %d; want exit %d", strings.Join(args, " "), err, exitCode(err), exitUsage)
		}
	}
}
