package vfio

import (
	"fmt"

	"github.com/vfioctl/vfioctl/ioasid"
)

// cdevBackend is Cdev: each device's own char device bound to one iommufd
// and attached to an IOAS allocated for the space (Linux 6.6). No group,
// no container.
type cdevBackend struct {
	noIOMMU bool
	iommufdSpace
}

func (b *cdevBackend) open(h *Handle, bdf string, o *Options) error {
	path, err := CdevPath(bdf)
	if err != nil {
		return err
	}
	if err := checkViable(bdf); err != nil {
		return err
	}
	if b.fd == nil {
		if b.fd, err = openIOMMUFD(o.RlimitPerProcess); err != nil {
			return err
		}
		if !b.noIOMMU {
			if b.ioas, err = b.fd.AllocIOAS(); err != nil {
				return err
			}
		}
	}
	if h.device, err = OpenCdev(path); err != nil {
		return err
	}
	h.device.fd.Rename(bdf)
	if h.devID, err = h.device.BindIOMMUFD(b.fd); err != nil {
		return err
	}
	if b.noIOMMU {
		return nil // nothing to attach: there is no IOMMU
	}
	// Closing the device fd detaches it.
	_, err = h.device.AttachPT(b.ioas.ID())
	return err
}

func (b *cdevBackend) expose(h *Handle) { h.iommufd, h.ioas = b.fd, b.ioas }

// hotReset proves ownership the cdev way (Linux 6.6): every dependent must
// be bound to this iommufd, which the kernel checks itself.
func (b *cdevBackend) hotReset(d *Device, deps []Dependent) error {
	var missing []string
	for _, dep := range deps {
		if dep.DevIDSet && dep.DevID == NotOwned {
			missing = append(missing, dep.Address()+" (not bound to this iommufd)")
		}
	}
	if len(missing) > 0 {
		return notOwned(d, missing)
	}
	return d.HotReset()
}

func (b *cdevBackend) describe(hdr *handoff, add func(string, duper)) {
	if b.fd != nil {
		add("iommufd", b.fd)
	}
	if b.ioas != nil {
		hdr.IOAS = b.ioas.ID()
	}
}

func (b *cdevBackend) release(*Handle) []error { return nil }

// receive rebuilds the backend from an iommufd another process set up,
// its device attached to the IOAS ioas there.
func (b *cdevBackend) receive(fd *ioasid.FD, ioas uint32) error {
	b.fd = fd
	if b.noIOMMU {
		return nil
	}
	var err error
	if b.ioas, err = fd.IOASByID(ioas); err != nil {
		return fmt.Errorf("IOAS %d: %w", ioas, err)
	}
	return nil
}
