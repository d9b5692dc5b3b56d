package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/mdev"
)

func mdevCommand() *cli.Command {
	return &cli.Command{
		Name:  "mdev",
		Usage: "list, create and remove mediated devices (as mdevctl does)",
		UsageText: `vfioctl mdev types [--json]                the parents and the types they offer
   vfioctl mdev list [--defined] [--json]     the mediated devices (--defined: those made at every boot)
   vfioctl mdev create [--uuid UUID] [--persist] PARENT TYPE
   vfioctl mdev create mtty mtty-2            a dual-port mtty sample device
   vfioctl mdev create --persist mtty mtty-2  ... and again at every boot
   vfioctl mdev remove [--persist] UUID       (--persist: and forget its definition)
   vfioctl mdev start [--parent PARENT]       create the defined devices that are missing (the boot hooks)

A mediated device opens like a PCI function, by its UUID (in Go,
vfio.Open(uuid, opts) through any backend). remove refuses (exit 5, naming
the holders) while a process has the device open. Definitions live in
` + mdev.DefinitionsDir + `, a file per UUID, as mdevctl's in /etc/mdevctl.d;
create --persist installs the boot hooks (see vfioctl persist).`,
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
				Name: "list", Usage: "the mediated devices", Flags: []cli.Flag{jsonFlag,
					&cli.BoolFlag{Name: "defined", Usage: "the definitions made again at every boot, and whether each exists now"}},
				Action: func(c *cli.Context) error {
					if c.Bool("defined") {
						return mdevDefined(c)
					}
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
				Flags: []cli.Flag{jsonFlag, &cli.StringFlag{Name: "uuid", Usage: "its UUID (default: a random one)"},
					&cli.BoolFlag{Name: "persist", Usage: "also define it, so that it is created again at every boot (installs the boot hooks)"}},
				Action: mdevCreate,
			},
			{
				Name: "remove", Usage: "remove a mediated device", ArgsUsage: "UUID",
				Flags:  []cli.Flag{&cli.BoolFlag{Name: "persist", Usage: "also delete its definition (a device that no longer exists is only undefined)"}},
				Action: mdevRemove,
			},
			{
				Name: "start", Usage: "create the defined mediated devices that do not exist, as the boot hooks do",
				UsageText: `vfioctl mdev start [--parent PARENT] [--json]
   vfioctl mdev start                  every definition (the systemd unit)
   vfioctl mdev start --parent mtty    one parent's (the udev rule, when its driver registers)

A definition whose parent is absent is reported and kept; any failure makes
the exit status 1.`,
				Flags:  []cli.Flag{jsonFlag, &cli.StringFlag{Name: "parent", Usage: "only this parent's definitions"}},
				Action: mdevStart,
			},
		},
	}
}

// created is what mdev create prints: the device and, with --persist, its
// definition and the hooks installed.
type created struct {
	*mdev.Device
	Defined *mdev.Definition `json:"defined,omitempty"`
	Hooks   []string         `json:"hooks_installed,omitempty"`
}

func mdevCreate(c *cli.Context) error {
	if c.NArg() != 2 {
		return usagef("mdev create needs a parent and a type (see vfioctl mdev types)")
	}
	parent, typ, uuid := c.Args().Get(0), c.Args().Get(1), c.String("uuid")
	if uuid == "" {
		var err error
		if uuid, err = mdev.RandomUUID(); err != nil {
			return err
		}
	}
	d, err := mdev.Create(parent, typ, uuid)
	if err != nil {
		return err
	}
	out := created{Device: d}
	if c.Bool("persist") {
		def, err := mdev.Define(parent, typ, d.UUID)
		if err != nil {
			return fmt.Errorf("created %s, but its definition: %w", d.UUID, err)
		}
		out.Defined = &def
		if out.Hooks, err = ensureHooks(); err != nil {
			return fmt.Errorf("defined %s, but the boot hooks: %w", d.UUID, err)
		}
	}
	return emit(c, out, func(w io.Writer) {
		fprintf(w, "%s\n", d.UUID)
		if out.Defined != nil {
			fprintf(w, "defined: created again at every boot (%s)\n", mdev.DefinitionsDir)
		}
		for _, h := range out.Hooks {
			fprintf(w, "installed %s\n", h)
		}
	})
}

func mdevRemove(c *cli.Context) error {
	if c.NArg() != 1 {
		return usagef("mdev remove needs a UUID")
	}
	uuid := c.Args().First()
	err := mdev.Remove(uuid)
	if !c.Bool("persist") {
		return err
	}
	if err != nil && !errors.Is(err, unix.ENODEV) {
		return err // still there: its definition stays
	}
	if uerr := mdev.Undefine(uuid); uerr != nil {
		return errors.Join(err, uerr)
	}
	fprintf(c.App.Writer, "%s: definition deleted\n", uuid)
	return nil
}

type definedEntry struct {
	mdev.Definition
	Exists bool `json:"exists"`
}

func mdevDefined(c *cli.Context) error {
	defs, err := mdev.Definitions()
	if err != nil {
		return err
	}
	out := []definedEntry{}
	for _, d := range defs {
		_, err := mdev.Get(d.UUID)
		out = append(out, definedEntry{Definition: d, Exists: err == nil})
	}
	return emit(c, out, func(w io.Writer) {
		fprintf(w, "UUID\tPARENT\tTYPE\tNOW\tSAVED\n")
		for _, e := range out {
			now := "absent"
			if e.Exists {
				now = "exists"
			}
			fprintf(w, "%s\t%s\t%s\t%s\t%s\n", e.UUID, e.Parent, e.Type, now, e.Saved)
		}
	})
}

func mdevStart(c *cli.Context) error {
	if c.NArg() != 0 {
		return usagef("mdev start takes no arguments (--parent names a parent)")
	}
	res, err := mdev.Start(c.String("parent"))
	return emitResults(c, res, len(res), func(w io.Writer) {
		for _, r := range res {
			fprintf(w, "%s\t%s\t%s\n", r.UUID, r.Result, r.Error)
		}
	}, err)
}
