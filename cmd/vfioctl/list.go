package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/vfioctl/vfioctl/pci"
)

// classes maps --class names to PCI base classes.
var classes = map[string]uint32{"storage": 0x01, "net": 0x02, "display": 0x03, "bridge": 0x06, "serial": 0x0c, "accel": 0x12, "other": 0xff}

func listCommand() *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "list PCI devices with driver and IOMMU group (like lspci -nnk)",
		UsageText: `vfioctl list [--class storage|net|display|bridge|serial|accel|other] [--json]
   vfioctl list --class net`,
		Flags: []cli.Flag{jsonFlag, &cli.StringFlag{Name: "class", Usage: "only devices of this class"}},
		Action: func(c *cli.Context) error {
			devs, err := pci.List()
			if err != nil {
				return err
			}
			if cl := c.String("class"); cl != "" {
				base, ok := classes[cl]
				if !ok {
					return usagef("unknown class %q (storage, net, display, bridge, serial, accel, other)", cl)
				}
				var keep []*pci.Device
				for _, d := range devs {
					if d.Class>>16 == base {
						keep = append(keep, d)
					}
				}
				devs = keep
			}
			return emit(c, devs, func(w io.Writer) {
				fprintf(w, "ADDRESS\tID\tCLASS\tDEVICE\tDRIVER\tGROUP\n")
				for _, d := range devs {
					grp := "-"
					if d.IOMMUGroup >= 0 {
						grp = strconv.Itoa(d.IOMMUGroup)
					}
					if d.NoIOMMU {
						grp = "noiommu-" + grp
					}
					name := clipName(d.Name())
					switch {
					case d.PhysFn != "":
						name += " [VF of " + d.PhysFn + "]"
					case d.TotalVFs > 0:
						name += fmt.Sprintf(" [PF, %d/%d VFs]", len(d.VirtFns), d.TotalVFs)
					}
					fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", d.Address, d.ID(), d.ClassName, name, orDash(d.Driver), grp)
				}
			})
		},
	}
}

func clipName(s string) string {
	if len(s) > 48 {
		return s[:45] + "..."
	}
	return strings.TrimSpace(s)
}

func groupsCommand() *cli.Command {
	return &cli.Command{
		Name:      "groups",
		Usage:     "list IOMMU groups: members, and whether VFIO can use the group (viable) or which device blocks it",
		UsageText: "vfioctl groups [--json]",
		Flags:     []cli.Flag{jsonFlag},
		Action: func(c *cli.Context) error {
			gs, err := pci.Groups()
			if err != nil {
				return err
			}
			return emit(c, gs, func(w io.Writer) {
				if len(gs) == 0 {
					fprintf(w, "no IOMMU groups: the IOMMU is off (see vfioctl doctor)\n")
					return
				}
				fprintf(w, "GROUP\tVIABLE\tDEVICES\tBLOCKED BY\n")
				for _, g := range gs {
					var blk []string
					for _, b := range g.Blockers {
						blk = append(blk, b.Device+" ("+b.Driver+")")
					}
					fprintf(w, "%d\t%v\t%s\t%s\n", g.ID, g.Viable, strings.Join(g.Devices, ","), join(blk))
				}
			})
		},
	}
}
