package vfio

import (
	"github.com/vfioctl/vfioctl/dma"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// spaprBackend is the legacy container on POWER, where its model is SPAPR
// TCE: a v1 container is enabled before it maps, a v2 one maps through a
// SPAPRMapper (which registers what it maps), and on pSeries a container
// holds one group.
type spaprBackend struct {
	containerBackend
}

func (b *spaprBackend) open(h *Handle, bdf string, o *Options) error {
	if b.c != nil {
		if err := b.joinable(bdf); err != nil {
			return err
		}
	}
	return b.openWith(h, bdf, o, func() error {
		if b.noIOMMU {
			return nil
		}
		s, err := b.c.SPAPR()
		if err != nil {
			return err
		}
		if s.Version() == SPAPRTCE {
			b.m = b.c
			return s.Enable()
		}
		b.m, err = NewSPAPRMapper(s)
		return err
	})
}

// joinable refuses a second group in a SPAPR TCE container on pSeries:
// there each PE's DMA windows are the hypervisor's (created per PE with
// RTAS), and the kernel cannot set one group's window table into another
// (set_window is EPERM), so the first map would fail.
func (b *spaprBackend) joinable(bdf string) error {
	if !pseries() {
		return nil
	}
	n, err := deviceGroup(bdf)
	if err != nil || b.groups[n] != nil {
		return err
	}
	return &vfioerr.NotSupportedError{Feature: "a second IOMMU group in one SPAPR TCE container on pSeries",
		Reason: "the hypervisor gives each PE (group) DMA windows of its own, which the kernel cannot share with another group: open each group into a container of its own"}
}

// receive rebuilds the backend from a container another process set up.
func (b *spaprBackend) receive(c *Container) error {
	b.c = c
	if b.noIOMMU {
		return nil
	}
	s, err := c.SPAPR()
	if err != nil {
		return err
	}
	if s.Version() == SPAPRTCE {
		b.m = c
		return nil
	}
	var m dma.Mapper
	m, err = NewSPAPRMapper(s)
	b.m = m
	return err
}
