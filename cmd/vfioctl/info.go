package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/vfioctl/vfioctl/mdev"
	"github.com/vfioctl/vfioctl/pci"
	"github.com/vfioctl/vfioctl/uapi"
	"github.com/vfioctl/vfioctl/vfio"
	"github.com/vfioctl/vfioctl/vfioerr"
)

var backendFlag = &cli.StringFlag{Name: "backend", Value: "auto", Usage: "auto, cdev (or iommufd, as VFIOCTL_BACKEND says), group-iommufd, iommufd-compat or legacy", EnvVars: []string{"VFIOCTL_BACKEND"}}

// withDevice opens the device named by the one argument (a PCI address on
// vfio-pci or a mediated device's UUID) through the chosen backend, runs f
// and closes it.
func withDevice(c *cli.Context, f func(pd *pci.Device, h *vfio.Handle) error) error {
	if c.NArg() != 1 {
		return usagef("%s needs one device: a PCI address (0000:00:03.0) or a mediated device's UUID", c.Command.Name)
	}
	return openDevice(c, c.Args().First(), f)
}

// openDevice opens name (a PCI address on vfio-pci or an mdev UUID) through
// --backend (and --vf-token where the command has it), runs f and closes
// it. pd is nil for a mediated device.
func openDevice(c *cli.Context, name string, f func(pd *pci.Device, h *vfio.Handle) error) error {
	b, err := vfio.ParseBackend(c.String("backend"))
	if err != nil {
		return usageError{err}
	}
	opts := &vfio.Options{Backend: b}
	if s := c.String("vf-token"); s != "" {
		t, err := vfio.ParseVFToken(s)
		if err != nil {
			return usageError{err}
		}
		opts.VFToken = &t
	}
	var pd *pci.Device
	if _, err := mdev.Get(name); err != nil {
		if pd, err = pci.Get(name); err != nil {
			return usagef("%s is neither a mediated device's UUID nor a PCI address: %v", name, err)
		}
		if pd.Driver != pci.VFIODriver {
			return fmt.Errorf("%s: %w (driver %s): run vfioctl bind %s first", pd.Address, pci.ErrNotBound, orDash(pd.Driver), pd.Address)
		}
		// A device in a no-IOMMU group was bound with --noiommu on purpose.
		name, opts.NoIOMMU = pd.Address, pd.NoIOMMU
	}
	h, err := vfio.Open(name, opts)
	if err != nil {
		if pd != nil {
			return pci.HeldElsewhere(pd, err)
		}
		return err
	}
	defer h.Close()
	return f(pd, h)
}

type regionInfo struct {
	Index        uint32      `json:"index"`
	Name         string      `json:"name"`
	Size         uint64      `json:"size"`
	Offset       uint64      `json:"offset"`
	Flags        []string    `json:"flags"`
	SparseAreas  [][2]uint64 `json:"sparse_mmap_areas,omitempty"`
	Type         uint32      `json:"type,omitempty"`
	Subtype      uint32      `json:"subtype,omitempty"`
	MSIXMappable bool        `json:"msix_mappable,omitempty"`
}

type irqInfo struct {
	Index uint32   `json:"index"`
	Name  string   `json:"name"`
	Count uint32   `json:"count"`
	Flags []string `json:"flags"`
}

// displayInfo is a device's display: how it hands out planes and the
// planes it answers for now (a plane the driver refuses to describe, like
// mdpy's cursor, is left out).
type displayInfo struct {
	Kind   vfio.DisplayKind `json:"kind"`
	Planes []vfio.Plane     `json:"planes"`
}

type deviceInfo struct {
	Address      string       `json:"address"`
	Backend      string       `json:"backend"`
	Flags        []string     `json:"flags"`
	Regions      []regionInfo `json:"regions"`
	IRQs         []irqInfo    `json:"irqs"`
	Display      *displayInfo `json:"display,omitempty"`
	ResetMethods []string     `json:"reset_methods"`
	Capabilities []string     `json:"pci_capabilities"`
	PhysFn       string       `json:"physfn,omitempty"`         // the SR-IOV PF of a VF
	VirtFns      []string     `json:"virtfns,omitempty"`        // the enabled VFs of a PF
	TotalVFs     int          `json:"sriov_totalvfs,omitempty"` // how many VFs a PF can have
}

var regionNames = []string{"BAR0", "BAR1", "BAR2", "BAR3", "BAR4", "BAR5", "ROM", "config", "VGA"}
var irqNames = []string{"INTx", "MSI", "MSI-X", "ERR", "REQ"}
var capNames = map[uint8]string{0x01: "power-management", 0x05: "MSI", 0x09: "vendor", 0x10: "PCI-Express", 0x11: "MSI-X"}

func flagNames(v uint32, names map[uint32]string) []string {
	var out []string
	for bit := uint32(1); bit != 0; bit <<= 1 {
		if v&bit != 0 {
			if n, ok := names[bit]; ok {
				out = append(out, n)
			} else {
				out = append(out, fmt.Sprintf("%#x", bit))
			}
		}
	}
	return out
}

func infoCommand() *cli.Command {
	return &cli.Command{
		Name:  "info",
		Usage: "show a device's regions (with capabilities), IRQs, display planes and reset methods, read through VFIO",
		UsageText: `vfioctl info [--backend auto|cdev|group-iommufd|iommufd-compat|legacy] [--vf-token UUID] [--json] ADDRESS|UUID
   vfioctl info 0000:00:03.0
   vfioctl info 8df7c7c8-835b-4422-93fb-bfc6d8e30f10            a mediated device, e.g. a vGPU with its display planes
   vfioctl info 0000:04:00.1 --vf-token bd8d9d2b-5a5f-4f5a-a211-f591514ba1f3   a VF of a PF on vfio-pci`,
		Flags: []cli.Flag{jsonFlag, backendFlag, &cli.StringFlag{Name: "vf-token", Usage: "the VF token the user of the SR-IOV physical function set, to open one of its VFs"}},
		Action: func(c *cli.Context) error {
			return withDevice(c, func(d *pci.Device, h *vfio.Handle) error {
				info, err := collectInfo(d, h)
				if err != nil {
					return err
				}
				return emit(c, info, func(w io.Writer) { printInfo(w, info) })
			})
		},
	}
}

func collectInfo(pd *pci.Device, h *vfio.Handle) (*deviceInfo, error) {
	d := h.Device()
	out := &deviceInfo{Address: d.Name(), Backend: h.Backend().String(),
		Flags: flagNames(d.Info().Flags, map[uint32]string{uapi.VFIO_DEVICE_FLAGS_RESET: "reset", uapi.VFIO_DEVICE_FLAGS_PCI: "pci", uapi.VFIO_DEVICE_FLAGS_CAPS: "caps"})}
	regs, err := d.Regions()
	if err != nil {
		return nil, err
	}
	for _, r := range regs {
		ri := regionInfo{Index: uint32(r.Index), Name: fmt.Sprint(r.Index), Size: r.Size, Offset: r.Offset, Type: r.Type, Subtype: r.Subtype, MSIXMappable: r.MSIXMappable,
			Flags: flagNames(r.Flags, map[uint32]string{uapi.VFIO_REGION_INFO_FLAG_READ: "read", uapi.VFIO_REGION_INFO_FLAG_WRITE: "write", uapi.VFIO_REGION_INFO_FLAG_MMAP: "mmap", uapi.VFIO_REGION_INFO_FLAG_CAPS: "caps"})}
		if int(r.Index) < len(regionNames) {
			ri.Name = regionNames[r.Index]
		}
		for _, a := range r.SparseAreas {
			ri.SparseAreas = append(ri.SparseAreas, [2]uint64{a.Offset, a.Size})
		}
		out.Regions = append(out.Regions, ri)
	}
	for i := 0; i < int(d.Info().NumIRQs); i++ {
		irq, err := d.IRQInfo(vfio.IRQIndex(i))
		if err != nil {
			continue // e.g. ERR on a conventional PCI device
		}
		ii := irqInfo{Index: uint32(irq.Index), Name: fmt.Sprint(i), Count: irq.Count,
			Flags: flagNames(irq.Flags, map[uint32]string{uapi.VFIO_IRQ_INFO_EVENTFD: "eventfd", uapi.VFIO_IRQ_INFO_MASKABLE: "maskable", uapi.VFIO_IRQ_INFO_AUTOMASKED: "automasked", uapi.VFIO_IRQ_INFO_NORESIZE: "noresize"})}
		if i < len(irqNames) {
			ii.Name = irqNames[i]
		}
		out.IRQs = append(out.IRQs, ii)
	}
	if pd != nil {
		out.ResetMethods, out.PhysFn, out.VirtFns, out.TotalVFs = pd.ResetMethods, pd.PhysFn, pd.VirtFns, pd.TotalVFs
	}
	if kind, err := d.Display(); err == nil {
		out.Display = &displayInfo{Kind: kind}
		for _, t := range []vfio.PlaneType{vfio.PlanePrimary, vfio.PlaneCursor} {
			if p, err := d.Plane(kind, t); err == nil {
				out.Display.Planes = append(out.Display.Planes, p)
			}
		}
	} else if !errors.Is(err, vfioerr.ErrNotSupported) {
		return nil, err
	}
	if cfg, err := d.Config(); err == nil {
		caps, _ := cfg.Capabilities()
		for _, cp := range caps {
			n := capNames[cp.ID]
			if n == "" {
				n = fmt.Sprintf("id-%#x", cp.ID)
			}
			out.Capabilities = append(out.Capabilities, fmt.Sprintf("%s@%#x", n, cp.Offset))
		}
	}
	return out, nil
}

func printInfo(w io.Writer, in *deviceInfo) {
	fprintf(w, "device %s via %s: flags %s; reset methods %s; capabilities %s\n", in.Address, in.Backend, join(in.Flags), join(in.ResetMethods), join(in.Capabilities))
	if in.PhysFn != "" {
		fprintf(w, "SR-IOV: virtual function of %s\n", in.PhysFn)
	}
	if in.TotalVFs > 0 {
		fprintf(w, "SR-IOV: physical function, %d of %d VFs enabled: %s\n", len(in.VirtFns), in.TotalVFs, join(in.VirtFns))
	}
	fprintf(w, "\n")
	fprintf(w, "REGION\tSIZE\tOFFSET\tFLAGS\tCAPS\n")
	for _, r := range in.Regions {
		caps := ""
		if len(r.SparseAreas) > 0 {
			caps = fmt.Sprintf("sparse-mmap %v", r.SparseAreas)
		}
		if r.Type != 0 {
			caps += fmt.Sprintf(" type %d/%d", r.Type, r.Subtype)
		}
		if r.MSIXMappable {
			caps += " msix-mappable"
		}
		fprintf(w, "%s\t%#x\t%#x\t%s\t%s\n", r.Name, r.Size, r.Offset, join(r.Flags), orDash(caps))
	}
	fprintf(w, "\nIRQ\tCOUNT\tFLAGS\n")
	for _, i := range in.IRQs {
		fprintf(w, "%s\t%d\t%s\n", i.Name, i.Count, join(i.Flags))
	}
	if in.Display != nil {
		fprintf(w, "\ndisplay (%s planes)\n", in.Display.Kind)
		for _, p := range in.Display.Planes {
			fprintf(w, "%s\n", p)
		}
	}
}
