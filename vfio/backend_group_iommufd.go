package vfio

import (
	"github.com/vfioctl/vfioctl/ioasid"
)

// groupIOMMUFDBackend is GroupIOMMUFD: groups attached to /dev/iommu in
// place of a container (Linux 6.2); mappings go to the iommufd's compat
// IOAS.
type groupIOMMUFDBackend struct {
	noIOMMU      bool
	iommufdSpace // its IOAS is the compat IOAS, borrowed
	groupSet
}

func (b *groupIOMMUFDBackend) open(h *Handle, bdf string, o *Options) error {
	var err error
	if b.fd == nil {
		if b.fd, err = openIOMMUFD(o.RlimitPerProcess); err != nil {
			return err
		}
	}
	if err := b.join(h, bdf, b.fd); err != nil {
		return err
	}
	if h.device, err = b.device(h, bdf, o.VFToken); err != nil {
		return err
	}
	if b.ioas == nil && !b.noIOMMU {
		b.ioas, err = b.fd.CompatIOAS()
	}
	return err
}

func (b *groupIOMMUFDBackend) expose(h *Handle) {
	h.group, h.iommufd, h.ioas = b.group(h), b.fd, b.ioas
}

func (b *groupIOMMUFDBackend) describe(hdr *handoff, add func(string, duper)) {
	if b.fd != nil {
		add("iommufd", b.fd)
	}
}

// receive rebuilds the backend from an iommufd another process set up.
func (b *groupIOMMUFDBackend) receive(fd *ioasid.FD) error {
	b.fd = fd
	if b.noIOMMU {
		return nil
	}
	var err error
	b.ioas, err = fd.CompatIOAS()
	return err
}
