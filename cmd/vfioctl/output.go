package main

import (
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/vfioctl/vfioctl/pci"
)

var jsonFlag = &cli.BoolFlag{Name: "json", Usage: "print JSON for scripts instead of text"}

// emit prints v as JSON with --json, else calls text.
// emitResults prints what a batch did (each item's result in v) and then
// fails with exit 1 if err reports some item's failure; an err with no
// results at all is returned as it is.
func emitResults(c *cli.Context, v any, n int, text func(w io.Writer), err error) error {
	if n == 0 && err != nil {
		return err
	}
	if eerr := emit(c, v, text); eerr != nil {
		return eerr
	}
	if err != nil {
		return cli.Exit("", exitFailure)
	}
	return nil
}

func emit(c *cli.Context, v any, text func(w io.Writer)) error {
	w := c.App.Writer
	if c.Bool("json") {
		if rv := reflect.ValueOf(v); rv.Kind() == reflect.Slice && rv.IsNil() {
			v = reflect.MakeSlice(rv.Type(), 0, 0).Interface() // [] for scripts, never null
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	text(tw)
	return tw.Flush()
}

// device reads the device named by the command's single PCI address
// argument (parsed strictly by pci.Get).
func device(c *cli.Context) (*pci.Device, error) {
	if c.NArg() != 1 {
		return nil, usagef("%s needs one PCI address, e.g. 0000:00:03.0", c.Command.Name)
	}
	d, err := pci.Get(c.Args().First())
	if err != nil {
		return nil, usageError{err}
	}
	return d, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func join(ss []string) string { return orDash(strings.Join(ss, ",")) }

func fprintf(w io.Writer, format string, args ...any) { fmt.Fprintf(w, format, args...) }
