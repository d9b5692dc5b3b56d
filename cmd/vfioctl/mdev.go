package main

import (
	"io"

	"github.com/urfave/cli/v2"

	"github.com/vfioctl/vfioctl/mdev"
)

func mdevCommand() *cli.Command {
	return &cli.Command{
		Name:  "mdev",
		Usage: "list, create and remove mediated devices (as mdevctl does)",
		UsageText: `vfioctl mdev types [--json]                the parents and the types they offer
   vfioctl mdev list [--json]                 the mediated devices
   vfioctl mdev create [--uuid UUID] PARENT TYPE
   vfioctl mdev create mtty mtty-2            a dual-port mtty sample device
   vfioctl mdev remove UUID

A mediated device opens like a PCI function, by its UUID (in Go,
vfio.Open(uuid, opts) through any backend). remove refuses (exit 5, naming
the holders) while a process has the device open.`,
		Subcommands: []*cli.Command{
			{
				Name: "types", Usage: "the parents that offer mediated devices and their types", Flags: []cli.Flag{jsonFlag},
				Action: func(c *cli.Context) error {
					ps, err := mdev.Parents()
					if err != nil {
						return err
					}
					if ps == nil {
						ps = []mdev.Parent{}
					}
					return emit(c, ps, func(w io.Writer) {
						if len(ps) == 0 {
							fprintf(w, "no parent offers mediated devices (no mdev parent driver is loaded)\n")
						}
						for _, p := range ps {
							fprintf(w, "%s\n", p.Name)
							for _, t := range p.Types {
								fprintf(w, "  %-16s %-10s %d available  %s\n", t.ID, t.DeviceAPI, t.Available, orDash(t.Name))
							}
						}
					})
				},
			},
			{
				Name: "list", Usage: "the mediated devices", Flags: []cli.Flag{jsonFlag},
				Action: func(c *cli.Context) error {
					ds, err := mdev.Devices()
					if err != nil {
						return err
					}
					if ds == nil {
						ds = []*mdev.Device{}
					}
					return emit(c, ds, func(w io.Writer) {
						for _, d := range ds {
							fprintf(w, "%s  %s %s  group %d  %s %s\n", d.UUID, d.Parent, d.Type, d.Group, orDash(d.VFIOGroup), orDash(d.VFIOCdev))
						}
					})
				},
			},
			{
				Name: "create", Usage: "create a mediated device", ArgsUsage: "PARENT TYPE",
				Flags: []cli.Flag{jsonFlag, &cli.StringFlag{Name: "uuid", Usage: "its UUID (default: a random one)"}},
				Action: func(c *cli.Context) error {
					if c.NArg() != 2 {
						return usagef("mdev create needs a parent and a type (see vfioctl mdev types)")
					}
					d, err := mdev.Create(c.Args().Get(0), c.Args().Get(1), c.String("uuid"))
					if err != nil {
						return err
					}
					return emit(c, d, func(w io.Writer) { fprintf(w, "%s\n", d.UUID) })
				},
			},
			{
				Name: "remove", Usage: "remove a mediated device", ArgsUsage: "UUID",
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usagef("mdev remove needs a UUID")
					}
					return mdev.Remove(c.Args().Get(0))
				},
			},
		},
	}
}
