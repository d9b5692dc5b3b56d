// Command demo boots the e2e guest (legacy kernel, intel-iommu) and runs a
// scripted vfioctl session in it, printing what a user would see. It is
// what `make demo` runs.
package main

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/vfioctl/vfioctl/hack/qemu"
	"github.com/vfioctl/vfioctl/hack/qemu/frame"
)

//go:embed demo.sh
var script string

// filter passes the guest's output through without the harness's frames.
type filter struct {
	w   io.Writer
	buf bytes.Buffer
}

func (f *filter) Write(p []byte) (int, error) {
	f.buf.Write(p)
	for {
		line, err := f.buf.ReadString('\n')
		if err != nil {
			f.buf.WriteString(line)
			return len(p), nil
		}
		if !strings.HasPrefix(line, "@@@vfioctl") {
			io.WriteString(f.w, line)
		}
	}
}

func main() {
	fmt.Println("booting a QEMU q35 guest with intel-iommu, two edus, e1000e and nvme (no KVM needed)...")
	res, err := qemu.Boot(context.Background(), qemu.Spec{
		Kernel:   "legacy",
		Profile:  "intel",
		Builds:   map[string]string{"bin/vfioctl": "./cmd/vfioctl"},
		Commands: []frame.Command{{Name: "demo", Argv: []string{"/bin/sh", "-c", script}, Timeout: 2 * time.Minute}},
		Stream:   &filter{w: os.Stdout},
		Timeout:  3 * time.Minute,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
	if res.Err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v (console log: %s)\n", res.Err, res.ConsoleLog)
		os.Exit(1)
	}
	os.Remove(res.ConsoleLog) // kept only when the demo failed
	fmt.Printf("\nguest powered off after %s\n", res.Elapsed.Round(time.Second/10))
}
