// Command vfioctl inspects PCI devices and IOMMU groups, binds devices to
// vfio-pci safely, and drives them through VFIO and iommufd.
package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/vfioctl/vfioctl/cdi"
	"github.com/vfioctl/vfioctl/nvme"
	"github.com/vfioctl/vfioctl/pci"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// Exit codes: scripts can tell a refusal from a failure.
const (
	exitOK          = 0
	exitFailure     = 1 // the operation failed (kernel error, I/O)
	exitUsage       = 2 // bad arguments: malformed address, unknown device or flag
	exitRefused     = 3 // refused for safety: device in use, group not viable
	exitUnsupported = 4 // the kernel or hardware lacks the feature
	exitBusy        = 5 // device nodes held open by a process
	exitState       = 6 // wrong state: already bound, not bound, no record
)

const exitHelp = `EXIT CODES:
   0  success
   1  the operation failed
   2  bad arguments (malformed address, unknown device)
   3  refused for safety (NIC or disk in use, IOMMU group not viable); --force overrides
   4  not supported by this kernel or IOMMU
   5  the device's VFIO nodes are held open (the holders are named)
   6  wrong state (already bound, not bound, nothing to restore, no saved binding)`

func main() {
	app := newApp()
	if err := app.Run(reorderArgs(app, os.Args)); err != nil {
		if msg := err.Error(); msg != "" {
			if a := advice(err); a != "" {
				msg += " (" + a + ")"
			}
			fmt.Fprintln(os.Stderr, "vfioctl:", msg)
		}
		os.Exit(exitCode(err))
	}
}

// advice says what to do about an error in terms of vfioctl's own flags;
// the library's messages state only the facts.
func advice(err error) string {
	var unsafeErr *pci.UnsafeError
	var nv *vfioerr.GroupNotViableError
	switch {
	case errors.As(err, &unsafeErr):
		return "use --force to do it anyway"
	case errors.Is(err, pci.ErrNoIOMMU):
		return "bind --noiommu accepts that"
	case errors.As(err, &nv) && errors.Is(err, errBind):
		return "bind the whole group with --group, or unbind the devices named"
	case errors.As(err, &nv):
		return "vfioctl bind --group " + nv.Blockers[0].Device + " gives the whole group to vfio-pci"
	}
	return ""
}

func newApp() *cli.App {
	return &cli.App{
		Name:  "vfioctl",
		Usage: "inspect PCI devices and IOMMU groups, bind them to vfio-pci safely, drive them through VFIO and iommufd",
		Description: `Examples:
   vfioctl list                        devices with their driver and IOMMU group
   vfioctl list --class net --json     network controllers, for scripts
   vfioctl groups                      every IOMMU group, viable or why not
   vfioctl bind 0000:00:03.0           move a device to vfio-pci (checks the group, NICs, disks)
   vfioctl bind --group 00:1f.0        move the device and the rest of its group
   vfioctl info 0000:00:03.0           regions, IRQs and reset methods through VFIO
   vfioctl dma-test 0000:00:03.0       map memory through the best backend; with edu, DMA a buffer
   vfioctl restore 0000:00:03.0        give the device back to the driver it had
   vfioctl doctor                      is this host ready for VFIO? what to fix

` + exitHelp,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "log each step to stderr"},
		},
		Before: func(c *cli.Context) error {
			level := slog.LevelWarn
			if c.Bool("verbose") {
				level = slog.LevelDebug
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
			return nil
		},
		Commands: withUsageErrors([]*cli.Command{
			listCommand(), groupsCommand(), bindCommand(), unbindCommand(), restoreCommand(),
			infoCommand(), dmaTestCommand(), resetCommand(), sriovCommand(), mdevCommand(), migrateCommand(), nvmeCommand(), persistCommand(), cdiCommand(), doctorCommand(), completionCommand(), manCommand(),
		}),
		// No command, or one that does not exist.
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("unknown command %q (vfioctl --help lists them)", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
		OnUsageError:   onUsageError,
		ExitErrHandler: func(*cli.Context, error) {}, // main maps errors to exit codes
	}
}

// onUsageError makes a flag the parser rejects a usage error (exit 2).
func onUsageError(_ *cli.Context, err error, _ bool) error { return usageError{err} }

func withUsageErrors(cmds []*cli.Command) []*cli.Command {
	for _, c := range cmds {
		c.OnUsageError = onUsageError
		withUsageErrors(c.Subcommands)
	}
	return cmds
}

// usageError marks an error in what the user typed.
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

func exitCode(err error) int {
	var ue usageError
	var ce cli.ExitCoder
	var unsafeErr *pci.UnsafeError
	switch {
	case errors.As(err, &ue), errors.Is(err, pci.ErrNoDevice), errors.Is(err, nvme.ErrBadRequest):
		return exitUsage
	case errors.As(err, &unsafeErr), errors.Is(err, vfioerr.ErrGroupNotViable), errors.Is(err, pci.ErrNoIOMMU):
		return exitRefused
	case errors.Is(err, vfioerr.ErrNotSupported), errors.Is(err, cdi.ErrNoIOMMUFD):
		return exitUnsupported
	case errors.Is(err, pci.ErrBusy):
		return exitBusy
	case errors.Is(err, pci.ErrAlreadyBound), errors.Is(err, pci.ErrNotBound), errors.Is(err, pci.ErrNoRecord), errors.Is(err, pci.ErrNotPersisted):
		return exitState
	case errors.As(err, &ce):
		return ce.ExitCode()
	}
	return exitFailure
}
