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
		UsageText: `vfioctl bind [--group] [--force] [--timeout 5s] [--json] ADDRESS
   vfioctl bind 0000:00:03.0
   vfioctl bind --group 0000:00:1f.0

Refuses (exit 3) when the IOMMU group would not be viable, when a NIC is up
with addresses or routes, or a disk is mounted, in swap or held; --force
takes the device anyway. A device with no IOMMU is refused unless
--noiommu asks for VFIO's unsafe no-IOMMU mode. The previous driver is recorded for restore.`,
		Flags: []cli.Flag{
			jsonFlag,
			&cli.BoolFlag{Name: "group", Usage: "also bind the other devices of the IOMMU group"},
			&cli.BoolFlag{Name: "force", Usage: "take devices from their drivers even while in use"},
			&cli.BoolFlag{Name: "noiommu", Usage: "bind a device that has no IOMMU, in VFIO's unsafe no-IOMMU mode (no isolation; taints the kernel)"},
			&cli.DurationFlag{Name: "timeout", Value: 5 * time.Second, Usage: "how long to wait for /dev/vfio nodes"},
		},
		Action: func(c *cli.Context) error {
			d, err := device(c)
			if err != nil {
				return err
			}
			bound, err := pci.Bind(d.Address, pci.BindOptions{Group: c.Bool("group"), Force: c.Bool("force"), NoIOMMU: c.Bool("noiommu"), Timeout: c.Duration("timeout")})
			if err != nil {
				return bindFailure{err}
			}
			return emit(c, bound, func(w io.Writer) {
				for _, b := range bound {
					fprintf(w, "%s: bound to vfio-pci (was %s); group %s", b.Address, orDash(b.Previous), b.GroupNode)
					if b.Cdev != "" {
						fprintf(w, ", cdev %s", b.Cdev)
					}
					fprintf(w, "\n")
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
}

func unbindAction(restore bool) cli.ActionFunc {
	return func(c *cli.Context) error {
		d, err := device(c)
		if err != nil {
			return err
		}
		addr := d.Address
		var drv string
		if restore {
			drv, err = pci.Restore(addr)
		} else {
			drv, err = pci.Unbind(addr)
		}
		if err != nil {
			return err
		}
		return emit(c, unbound{addr, drv}, func(w io.Writer) {
			fprintf(w, "%s: released from vfio-pci; driver now %s\n", addr, orDash(drv))
		})
	}
}

func unbindCommand() *cli.Command {
	return &cli.Command{
		Name:  "unbind",
		Usage: "release a device from vfio-pci and give it back to its previous (or default) driver",
		UsageText: `vfioctl unbind [--json] ADDRESS
   vfioctl unbind 0000:00:03.0

Refuses (exit 5), naming the processes, while a VFIO node of the device is open.`,
		Flags:  []cli.Flag{jsonFlag},
		Action: unbindAction(false),
	}
}

func restoreCommand() *cli.Command {
	return &cli.Command{
		Name:  "restore",
		Usage: "give a device bound by `vfioctl bind` back to the driver it had",
		UsageText: `vfioctl restore [--json] ADDRESS
   vfioctl restore 0000:00:04.0

Fails (exit 6) when vfioctl has no record of the device's previous driver.`,
		Flags:  []cli.Flag{jsonFlag},
		Action: unbindAction(true),
	}
}
