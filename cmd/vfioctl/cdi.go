package main

import (
	"io"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/vfioctl/vfioctl/cdi"
	"github.com/vfioctl/vfioctl/pci"
)

func cdiCommand() *cli.Command {
	var policies []string
	for _, p := range cdi.Policies {
		policies = append(policies, string(p))
	}
	return &cli.Command{
		Name:  "cdi",
		Usage: "describe VFIO devices to container runtimes (Container Device Interface specs)",
		UsageText: `vfioctl cdi generate [--policy prefer-iommufd] [--kind vfioctl.dev/pci] [--dir /var/run/cdi] [ADDRESS...]
   vfioctl cdi list [--dir DIR]...`,
		Subcommands: []*cli.Command{
			{
				Name:  "generate",
				Usage: "write a CDI spec for the devices bound to vfio-pci (or those named)",
				UsageText: `vfioctl cdi generate [--policy POLICY] [--kind VENDOR/CLASS] [--dir DIR] [--stdout] [--json] [ADDRESS...]
   vfioctl cdi generate                          every vfio-pci device, into /var/run/cdi
   vfioctl cdi generate --policy legacy 0000:00:05.0
   vfioctl cdi generate --stdout --json          print the spec instead

Each device is named KIND=ADDRESS (vfioctl.dev/pci=0000:00:05.0) and gets its
own node; the node its backend shares (/dev/vfio/vfio or /dev/iommu) is in the
spec's container edits. The policy chooses one backend for the whole set:
  legacy           /dev/vfio/vfio + /dev/vfio/N
  prefer-iommufd   /dev/iommu + /dev/vfio/devices/vfioN when every device has
                   a cdev and /dev/iommu exists, else legacy for all (default)
  require-iommufd  iommufd, or exit 4 saying why not
Devices must be bound to vfio-pci in viable groups (exit 3 names the blocker).`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "policy", Value: string(cdi.PreferIOMMUFD), Usage: "backend policy: " + strings.Join(policies, ", ")},
					&cli.StringFlag{Name: "kind", Value: cdi.DefaultKind, Usage: "CDI vendor/class of the devices"},
					&cli.StringFlag{Name: "dir", Value: "/var/run/cdi", Usage: "spec directory to write into"},
					&cli.BoolFlag{Name: "stdout", Usage: "print the spec (YAML, or JSON with --json) instead of writing it"},
					jsonFlag,
				},
				Action: cdiGenerate,
			},
			{
				Name:  "list",
				Usage: "the CDI devices published in the spec directories (any vendor), with their nodes",
				UsageText: `vfioctl cdi list [--dir DIR]... [--json]
   vfioctl cdi list                      /etc/cdi and /var/run/cdi`,
				Flags: []cli.Flag{
					&cli.StringSliceFlag{Name: "dir", Usage: "spec directory to read (repeatable; default /etc/cdi and /var/run/cdi)"},
					jsonFlag,
				},
				Action: cdiList,
			},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("unknown cdi command %q (generate, list)", c.Args().First())
			}
			return cli.ShowSubcommandHelp(c)
		},
	}
}

type cdiGenerated struct {
	Path    string       `json:"path"`
	Backend string       `json:"backend"`
	Devices []cdiNamed   `json:"devices"`
	Shared  []string     `json:"shared_nodes"`
	Nodes   *cdi.NodeSet `json:"-"`
}

type cdiNamed struct {
	Name    string   `json:"name"`
	Address string   `json:"address"`
	Nodes   []string `json:"nodes"`
}

func cdiGenerate(c *cli.Context) error {
	p, err := cdi.ParsePolicy(c.String("policy"))
	if err != nil {
		return usageError{err}
	}
	var addrs []string
	for _, a := range c.Args().Slice() {
		pa, err := pci.ParseAddress(a)
		if err != nil {
			return usageError{err}
		}
		addrs = append(addrs, pa.String())
	}
	spec, ns, err := cdi.Generate(addrs, p, c.String("kind"))
	if err != nil {
		return err
	}
	if c.Bool("stdout") {
		if c.Bool("json") {
			return emit(c, spec, nil)
		}
		b, err := cdi.YAML(spec)
		if err != nil {
			return err
		}
		_, err = c.App.Writer.Write(b)
		return err
	}
	path, err := cdi.Write(spec, c.String("dir"))
	if err != nil {
		return err
	}
	out := cdiGenerated{Path: path, Backend: ns.Backend, Shared: ns.Shared}
	for _, d := range ns.Devices {
		out.Devices = append(out.Devices, cdiNamed{Name: cdi.Name(spec.Kind, d.Address), Address: d.Address, Nodes: d.Nodes})
	}
	return emit(c, out, func(w io.Writer) {
		fprintf(w, "wrote %s (backend %s; every device also gets %s)\n", path, ns.Backend, strings.Join(ns.Shared, ", "))
		for _, d := range out.Devices {
			fprintf(w, "%s\t%s\n", d.Name, strings.Join(d.Nodes, ", "))
		}
	})
}

type cdiListed struct {
	Devices []cdi.Published `json:"devices"`
	Errors  []cdiSpecError  `json:"errors"`
}

type cdiSpecError struct {
	Spec  string `json:"spec"`
	Error string `json:"error"`
}

func cdiList(c *cli.Context) error {
	if c.NArg() != 0 {
		return usagef("cdi list takes no arguments (--dir names directories)")
	}
	devs, errs := cdi.List(c.StringSlice("dir")...)
	out := cdiListed{Devices: devs, Errors: []cdiSpecError{}}
	if out.Devices == nil {
		out.Devices = []cdi.Published{}
	}
	var paths []string
	for p := range errs {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		for _, e := range errs[p] {
			out.Errors = append(out.Errors, cdiSpecError{p, e.Error()})
		}
	}
	return emit(c, out, func(w io.Writer) {
		fprintf(w, "NAME\tNODES\tSPEC\n")
		for _, d := range devs {
			fprintf(w, "%s\t%s\t%s\n", d.Name, strings.Join(d.Nodes, ","), d.Spec)
		}
		for _, e := range out.Errors {
			fprintf(w, "error\t%s\t%s\n", e.Spec, e.Error)
		}
	})
}
