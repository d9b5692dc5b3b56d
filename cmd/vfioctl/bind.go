package main

import (
	"errors"
	"io"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/vfioctl/vfioctl/pci"
)

func bindCommand() *cli.Command {
	return &cli.Command{
		Name:  "bind",
		Usage: "move a device (or its whole IOMMU group) to vfio-pci, refusing when unsafe",
		UsageText: `vfioctl bind [--group] [--force] [--noiommu] [--owner UID:GID] [--persist] [--timeout 5s] [--json] ADDRESS
   vfioctl bind 0000:00:03.0
   vfioctl bind --group 0000:00:1f.0
   vfioctl bind --owner 1000:1000 0000:00:03.0    a VMM running as uid 1000 can open it
   vfioctl bind --persist 0000:01:00.0           and again at every boot (vfioctl persist)

Refuses (exit 3) when the IOMMU group would not be viable, when a NIC is up
with addresses or routes, or a disk is mounted, in swap or held; --force
takes the device anyway. A device with no IOMMU is refused unless
--noiommu asks for VFIO's unsafe no-IOMMU mode. The previous driver is recorded for restore.
--owner gives the device's /dev/vfio/N and /dev/vfio/devices/vfioN to a
user and group (mode 0660). --persist also saves the binding, with these
options, and installs the boot hooks that make it again at every boot.`,
		Flags: []cli.Flag{
			jsonFlag,
			&cli.BoolFlag{Name: "group", Usage: "also bind the other devices of the IOMMU group"},
			&cli.BoolFlag{Name: "force", Usage: "take devices from their drivers even while in use"},
			&cli.BoolFlag{Name: "noiommu", Usage: "bind a device that has no IOMMU, in VFIO's unsafe no-IOMMU mode (no isolation; taints the kernel)"},
			&cli.StringFlag{Name: "owner", Usage: "give the VFIO nodes to `UID:GID` (or USER[:GROUP])"},
			&cli.BoolFlag{Name: "persist", Usage: "save the binding and make it again at every boot"},
			&cli.DurationFlag{Name: "timeout", Value: 5 * time.Second, Usage: "how long to wait for /dev/vfio nodes"},
		},
		Action: func(c *cli.Context) error {
			d, err := device(c)
			if err != nil {
				return err
			}
			opts := pci.BindOptions{Group: c.Bool("group"), Force: c.Bool("force"), NoIOMMU: c.Bool("noiommu"), Timeout: c.Duration("timeout")}
			if s := c.String("owner"); s != "" {
				o, err := pci.ParseOwner(s)
				if err != nil {
					return usageError{err}
				}
				opts.Owner = &o
			}
			bound, err := pci.Bind(d.Address, opts)
			if err != nil {
				return bindFailure{err}
			}
			var saved persistResult
			if c.Bool("persist") {
				if saved, err = saveBinding(d.Address, opts); err != nil {
					return err
				}
			}
			out := struct {
				Bound []pci.Bound `json:"bound"`
				persistResult
			}{bound, saved}
			if !c.Bool("persist") && c.Bool("json") {
				return emit(c, bound, nil) // the shape scripts had before --persist
			}
			return emit(c, out, func(w io.Writer) {
				for _, b := range bound {
					fprintf(w, "%s: bound to vfio-pci (was %s); group %s", b.Address, orDash(b.Previous), b.GroupNode)
					if b.Cdev != "" {
						fprintf(w, ", cdev %s", b.Cdev)
					}
					if b.Owner != nil {
						fprintf(w, ", owner %s", b.Owner)
					}
					fprintf(w, "\n")
				}
				if saved.Saved != nil {
					fprintf(w, "%s: saved in %s; bound again at every boot\n", d.Address, pci.PersistDir)
				}
				for _, h := range saved.Hooks {
					fprintf(w, "installed %s\n", h)
				}
			})
		},
	}
}

// errBind is matched by errors of the bind command, whose advice differs
// (--group, --force) from the same error met elsewhere.
var errBind = errors.New("bind")

type bindFailure struct{ error }

func (e bindFailure) Unwrap() error        { return e.error }
func (e bindFailure) Is(target error) bool { return target == errBind }

type unbound struct {
	Address string `json:"address"`
	Driver  string `json:"driver"`
	// Forgotten: --persist deleted a saved binding.
	Forgotten bool `json:"forgotten_saved_binding,omitempty"`
}

var persistUnbindFlag = &cli.BoolFlag{Name: "persist", Usage: "also delete the saved binding, so the device stays with its own driver after a reboot"}

func unbindAction(restore bool) cli.ActionFunc {
	return func(c *cli.Context) error {
		d, err := device(c)
		if err != nil {
			return err
		}
		addr := d.Address
		var forgot bool
		if c.Bool("persist") {
			switch err := pci.Unpersist(addr); {
			case err == nil:
				forgot = true
			case !errors.Is(err, pci.ErrNotPersisted):
				return err
			}
		}
		var drv string
		if restore {
			drv, err = pci.Restore(addr)
		} else {
			drv, err = pci.Unbind(addr)
		}
		if err != nil {
			if !(forgot && errors.Is(err, pci.ErrNotBound)) {
				return err
			}
			drv = d.Driver // nothing to unbind now: the saved binding was the point
		}
		return emit(c, unbound{addr, drv, forgot}, func(w io.Writer) {
			if err == nil {
				fprintf(w, "%s: released from vfio-pci; driver now %s\n", addr, orDash(drv))
			} else {
				fprintf(w, "%s: not bound to vfio-pci (driver %s)\n", addr, orDash(drv))
			}
			if forgot {
				fprintf(w, "%s: saved binding deleted; it stays with its own driver at boot\n", addr)
			} else if c.Bool("persist") {
				fprintf(w, "%s: had no saved binding\n", addr)
			}
		})
	}
}

func unbindCommand() *cli.Command {
	return &cli.Command{
		Name:  "unbind",
		Usage: "release a device from vfio-pci and give it back to its previous (or default) driver",
		UsageText: `vfioctl unbind [--persist] [--json] ADDRESS
   vfioctl unbind 0000:00:03.0
   vfioctl unbind --persist 0000:01:00.0    and not again at boot

Refuses (exit 5), naming the processes, while a VFIO node of the device is open.`,
		Flags:  []cli.Flag{jsonFlag, persistUnbindFlag},
		Action: unbindAction(false),
	}
}

func restoreCommand() *cli.Command {
	return &cli.Command{
		Name:  "restore",
		Usage: "give a device bound by `vfioctl bind` back to the driver it had",
		UsageText: `vfioctl restore [--persist] [--json] ADDRESS
   vfioctl restore 0000:00:04.0
   vfioctl restore --persist 0000:01:00.0   and not again at boot

Fails (exit 6) when vfioctl has no record of the device's previous driver.`,
		Flags:  []cli.Flag{jsonFlag, persistUnbindFlag},
		Action: unbindAction(true),
	}
}
