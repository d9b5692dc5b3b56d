package main

import (
	"io"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/vfioctl/vfioctl/pci"
)

type sriovState struct {
	Address  string   `json:"address"`
	Driver   string   `json:"driver"`
	TotalVFs int      `json:"sriov_totalvfs"`
	VirtFns  []string `json:"virtfns"`
}

func sriovCommand() *cli.Command {
	return &cli.Command{
		Name:  "sriov",
		Usage: "show or set the number of SR-IOV virtual functions of a physical function",
		UsageText: `vfioctl sriov [--json] ADDRESS [N]
   vfioctl sriov 0000:04:00.0       the PF's VFs
   vfioctl sriov 0000:04:00.0 2     enable two VFs (0 disables them)

A PF on vfio-pci needs vfio-pci loaded with enable_sriov=1; vfio-pci then
binds the VFs to itself, and opening one needs the VF token the PF's user
set (vfioctl info --vf-token).`,
		Flags: []cli.Flag{jsonFlag, &cli.DurationFlag{Name: "timeout", Value: 5 * time.Second, Usage: "how long to wait for the VFs"}},
		Action: func(c *cli.Context) error {
			if c.NArg() < 1 || c.NArg() > 2 {
				return usagef("sriov needs a PCI address and optionally a number of VFs")
			}
			d, err := pci.Get(c.Args().Get(0))
			if err != nil {
				return usageError{err}
			}
			if c.NArg() == 2 {
				n, err := strconv.Atoi(c.Args().Get(1))
				if err != nil || n < 0 {
					return usagef("number of VFs %q is not a count", c.Args().Get(1))
				}
				if err := pci.SetNumVFs(d.Address, n, c.Duration("timeout")); err != nil {
					return err
				}
				if d, err = pci.Get(d.Address); err != nil {
					return err
				}
			}
			st := sriovState{Address: d.Address, Driver: d.Driver, TotalVFs: d.TotalVFs, VirtFns: d.VirtFns}
			if st.VirtFns == nil {
				st.VirtFns = []string{}
			}
			return emit(c, st, func(w io.Writer) {
				fprintf(w, "%s (%s): %d of %d VFs: %s\n", st.Address, orDash(st.Driver), len(st.VirtFns), st.TotalVFs, join(st.VirtFns))
			})
		},
	}
}
