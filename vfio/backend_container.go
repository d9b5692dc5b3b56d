package vfio

import (
	"github.com/vfioctl/vfioctl/dma"
)

// containerBackend is Legacy (/dev/vfio/vfio) and IOMMUFDCompat (/dev/iommu
// opened as a container): groups attached to one container whose type1
// model maps for all of them.
type containerBackend struct {
	kind    Backend
	path    string
	noIOMMU bool
	c       *Container
	m       dma.Mapper
	groupSet
}

func (b *containerBackend) open(h *Handle, bdf string, o *Options) error {
	return b.openWith(h, bdf, o, func() error {
		if b.m == nil && !b.noIOMMU {
			b.m = b.c
		}
		return nil
	})
}

// openWith opens the container (the space's first device), joins the
// group, sets the model once, lets setup make the Mapper, and opens the
// device.
func (b *containerBackend) openWith(h *Handle, bdf string, o *Options, setup func() error) error {
	var err error
	if b.c == nil {
		if b.c, err = OpenContainerPath(b.path); err != nil {
			return err
		}
	}
	if err := b.join(h, bdf, b.c); err != nil {
		return err
	}
	if b.c.IOMMU() == 0 {
		t := o.IOMMU
		if b.noIOMMU {
			t = NoIOMMU
		}
		if err := b.c.SetIOMMU(t); err != nil {
			return err
		}
		if err := setup(); err != nil {
			return err
		}
	}
	h.device, err = b.device(h, bdf, o.VFToken)
	return err
}

func (b *containerBackend) mapper() dma.Mapper { return b.m }

func (b *containerBackend) expose(h *Handle) {
	h.container, h.group = b.c, b.group(h)
}

func (b *containerBackend) describe(hdr *handoff, add func(string, duper)) {
	if b.c != nil {
		add("container", b.c)
		hdr.IOMMU = int(b.c.IOMMU())
	}
}

func (b *containerBackend) close() []error {
	if b.c == nil {
		return nil
	}
	return []error{b.c.Close()}
}

// receive rebuilds the backend from a container another process set up.
func (b *containerBackend) receive(c *Container) {
	b.c = c
	if !b.noIOMMU {
		b.m = c
	}
}
