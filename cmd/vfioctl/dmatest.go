package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/vfioctl/vfioctl/dma"
	"github.com/vfioctl/vfioctl/edu"
	"github.com/vfioctl/vfioctl/pci"
	"github.com/vfioctl/vfioctl/vfio"
	"github.com/vfioctl/vfioctl/vfioerr"
)

type dmaReport struct {
	Address    string      `json:"address"`
	Backend    string      `json:"backend"`
	IOMMU      string      `json:"iommu_model,omitempty"` // the container's: type1v2, spapr-tce-v2...
	IOVARanges []dma.Range `json:"iova_ranges"`
	Alignment  uint64      `json:"iova_alignment"`
	Mapped     uint64      `json:"mapped_bytes"`
	IOVA       uint64      `json:"iova"`
	Roundtrip  string      `json:"roundtrip"` // "ok", or why it was not run
}

func dmaTestCommand() *cli.Command {
	return &cli.Command{
		Name:    "dma-test",
		Aliases: []string{"map"},
		Usage:   "map a buffer for a bound device through a backend, report the IOVA space; with QEMU's edu, DMA through it",
		UsageText: `vfioctl dma-test [--backend auto|cdev|group-iommufd|iommufd-compat|legacy] [--size 8192] [--json] ADDRESS
   vfioctl dma-test 0000:00:03.0
   vfioctl dma-test --backend legacy --json 0000:00:03.0`,
		Flags: []cli.Flag{jsonFlag, backendFlag, &cli.IntFlag{Name: "size", Value: 8192, Usage: "bytes to map"}},
		Action: func(c *cli.Context) error {
			if c.Int("size") <= 0 {
				return usagef("--size must be positive")
			}
			return withDevice(c, func(d *pci.Device, h *vfio.Handle) error { return dmaTest(c, d, h) })
		},
	}
}

// dmaTest maps a buffer through h's Mapper and, for edu, DMAs through it.
func dmaTest(c *cli.Context, d *pci.Device, h *vfio.Handle) error {
	var err error
	if h.NoIOMMU() {
		return &vfioerr.NotSupportedError{Feature: "dma-test on " + d.Address, Reason: "the device is in no-IOMMU mode: there is no IOMMU to map through"}
	}
	rep := dmaReport{Address: d.Address, Backend: h.Backend().String()}
	via := rep.Backend
	if h.Container() != nil {
		rep.IOMMU = h.Container().IOMMU().String()
		via += " (" + rep.IOMMU + ")"
	}
	if rep.IOVARanges, err = h.Mapper().IOVARanges(); err != nil {
		return err
	}
	if rep.Alignment, err = h.Mapper().Alignment(); err != nil {
		return err
	}
	alloc, err := dma.NewAllocator(rep.IOVARanges, rep.Alignment)
	if err != nil {
		return err
	}
	isEdu := d.Vendor == edu.Vendor && d.Device == edu.Device
	if isEdu {
		alloc.Limit(edu.DMAMask)
	}
	buf, err := dma.CreateBuffer(c.Int("size"))
	if err != nil {
		return err
	}
	defer buf.Close()
	if rep.IOVA, err = alloc.Reserve(uint64(buf.Len())); err != nil {
		return err
	}
	if err := h.Mapper().Map(rep.IOVA, buf.Bytes(), dma.ReadWrite); err != nil {
		return err
	}
	rep.Mapped = uint64(buf.Len())
	rep.Roundtrip = "not run: not an edu device"
	if isEdu && buf.Len() >= 8192 {
		e, err := edu.Open(h.Device())
		if err != nil {
			return err
		}
		defer e.Close()
		if err := e.Roundtrip(buf, rep.IOVA, 2048); err != nil {
			return fmt.Errorf("DMA roundtrip through IOVA %#x: %w", rep.IOVA, err)
		}
		rep.Roundtrip = "ok"
	}
	if err := h.Mapper().Unmap(rep.IOVA, rep.Mapped); err != nil {
		return err
	}
	return emit(c, rep, func(w io.Writer) {
		fprintf(w, "%s via %s\nIOVA ranges %v, alignment %#x\nmapped %d bytes at IOVA %#x, unmapped\nDMA roundtrip: %s\n",
			rep.Address, via, rep.IOVARanges, rep.Alignment, rep.Mapped, rep.IOVA, rep.Roundtrip)
	})
}

func resetCommand() *cli.Command {
	return &cli.Command{
		Name:  "reset",
		Usage: "reset a bound device (function-level reset via VFIO; --hot for a PCI bus/slot reset)",
		UsageText: `vfioctl reset [--hot] [--backend ...] ADDRESS
   vfioctl reset 0000:00:03.0
   vfioctl reset --hot 0000:02:00.0      secondary bus reset of the device behind a root port`,
		Flags: []cli.Flag{backendFlag, &cli.BoolFlag{Name: "hot", Usage: "PCI hot (bus or slot) reset"}},
		Action: func(c *cli.Context) error {
			return withDevice(c, func(d *pci.Device, h *vfio.Handle) error { return reset(c, d.Address, h) })
		},
	}
}

// reset resets h's device, by function or (--hot) by bus or slot.
func reset(c *cli.Context, addr string, h *vfio.Handle) error {
	if c.Bool("hot") {
		deps, err := h.Device().HotResetInfo()
		if err != nil {
			return err
		}
		if err := h.HotReset(); err != nil {
			return err
		}
		names := make([]string, len(deps))
		for i, d := range deps {
			names[i] = d.Address()
		}
		fprintf(c.App.Writer, "%s: hot reset via %s (reset: %s)\n", addr, h.Backend(), strings.Join(names, ", "))
		return nil
	}
	if err := h.Device().Reset(); err != nil {
		return err
	}
	fprintf(c.App.Writer, "%s: reset\n", addr)
	return nil
}
