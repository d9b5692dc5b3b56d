package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// reorderArgs lets flags follow positional arguments, as people type them
// with ip, kubectl and git (`vfioctl info 0000:00:03.0 --json`): the
// parser of urfave/cli stops at the first positional, so each command's
// flags (with their values) are moved in front of its positionals. A "--"
// ends the flags; what follows it stays positional.
func reorderArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	out := []string{args[0]}
	rest := args[1:]
	// Global flags come before the command.
	for len(rest) > 0 && isFlag(rest[0]) {
		out = append(out, rest[0])
		rest = rest[1:]
	}
	if len(rest) == 0 {
		return out
	}
	cmd := findCommand(app.Commands, rest[0])
	out = append(out, rest[0])
	rest = rest[1:]
	if cmd == nil {
		return append(out, rest...)
	}
	if len(cmd.Subcommands) > 0 && len(rest) > 0 && !isFlag(rest[0]) {
		sub := &cli.App{Commands: cmd.Subcommands}
		return append(out, reorderArgs(sub, append([]string{""}, rest...))[1:]...)
	}
	var flags, positionals []string
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		switch {
		case a == "--":
			positionals = append(positionals, rest[i:]...)
			i = len(rest)
		case isFlag(a):
			flags = append(flags, a)
			if !strings.Contains(a, "=") && takesValue(cmd, a) && i+1 < len(rest) {
				i++
				flags = append(flags, rest[i])
			}
		default:
			positionals = append(positionals, a)
		}
	}
	return append(append(out, flags...), positionals...)
}

func isFlag(a string) bool { return len(a) > 1 && a[0] == '-' }

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// takesValue reports whether the command's flag named by a (-x or --xyz)
// takes a value; unknown flags are left for the parser to reject.
func takesValue(cmd *cli.Command, a string) bool {
	name := strings.TrimLeft(a, "-")
	for _, f := range cmd.Flags {
		for _, n := range f.Names() {
			if n != name {
				continue
			}
			if bf, ok := f.(*cli.BoolFlag); ok && bf != nil {
				return false
			}
			return true
		}
	}
	return false
}
