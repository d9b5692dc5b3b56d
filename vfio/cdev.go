package vfio

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/internal/sysfs"
	"github.com/vfioctl/vfioctl/uapi"
)

// CdevPath is the VFIO char device of a PCI device (/dev/vfio/devices/vfioN,
// Linux 6.6 with VFIO_DEVICE_CDEV), found through sysfs.
func CdevPath(bdf string) (string, error) {
	n := sysfs.DeviceCdev(bdf)
	if n == "" {
		return "", &kernel.NotSupportedError{Feature: "VFIO device cdev for " + bdf, Version: "6.6",
			Reason: "the device is not bound to vfio-pci, or the kernel lacks CONFIG_VFIO_DEVICE_CDEV"}
	}
	return "/dev/vfio/devices/" + n, nil
}

// OpenCdev opens a device char device. The device is not usable until it is
// bound to an iommufd (BindIOMMUFD) and attached to an IOAS or HWPT.
func OpenCdev(path string) (*Device, error) {
	fd, err := kernel.OpenPath(path)
	if err != nil {
		return nil, err
	}
	// GET_INFO is refused until the device is bound: read it after Bind.
	return &Device{fd: fd, name: path}, nil
}

// BindIOMMUFD is VFIO_DEVICE_BIND_IOMMUFD: it binds the cdev to an iommufd
// (anything with FD(), normally an *ioasid.FD) and returns the device id
// iommufd knows it by.
func (d *Device) BindIOMMUFD(iommufd FDer) (uint32, error) {
	ifd, err := iommufd.FD()
	if err != nil {
		return 0, err
	}
	b := uapi.VfioDeviceBindIommufd{Argsz: uint32(unsafe.Sizeof(uapi.VfioDeviceBindIommufd{})), Iommufd: int32(ifd)}
	if _, err := d.fd.Ioctl(uapi.VFIO_DEVICE_BIND_IOMMUFD, uintptr(unsafe.Pointer(&b))); err != nil {
		e := &kernel.Error{Op: "VFIO_DEVICE_BIND_IOMMUFD", Object: d.name, Args: fmt.Sprintf("iommufd %d", ifd), Err: err}
		switch {
		case errors.Is(err, unix.EPERM):
			e.Hint = unsafeInterruptsHint
		case errors.Is(err, unix.EBUSY):
			e.Hint = "the device is already open through its group or bound"
		case errors.Is(err, unix.ENOTTY):
			return 0, &kernel.NotSupportedError{Feature: "VFIO_DEVICE_BIND_IOMMUFD", Version: "6.6"}
		}
		return 0, e
	}
	if err := d.loadInfo(); err != nil {
		return 0, err
	}
	return b.OutDevid, nil
}

// AttachPT is VFIO_DEVICE_ATTACH_IOMMUFD_PT: attach the bound device to an
// IOAS or HWPT by id. It returns the id the kernel attached to (attaching to
// an IOAS yields the automatically created HWPT). Attaching an attached
// device replaces its page table in place; some IOMMU drivers
// (virtio-iommu in Linux 6.12) refuse that with EADDRINUSE: DetachPT first.
func (d *Device) AttachPT(id uint32) (uint32, error) {
	a := uapi.VfioDeviceAttachIommufdPt{Argsz: uint32(unsafe.Sizeof(uapi.VfioDeviceAttachIommufdPt{})), PtId: id}
	err := d.ioctl("VFIO_DEVICE_ATTACH_IOMMUFD_PT", uapi.VFIO_DEVICE_ATTACH_IOMMUFD_PT, unsafe.Pointer(&a), fmt.Sprintf("pt %d", id))
	var ke *kernel.Error
	if errors.As(err, &ke) && errors.Is(err, unix.EADDRINUSE) {
		ke.Hint = "the device is attached elsewhere and this IOMMU cannot replace its page table in place: DetachPT first"
	}
	if err != nil {
		return 0, err
	}
	return a.PtId, nil
}

// DetachPT is VFIO_DEVICE_DETACH_IOMMUFD_PT.
func (d *Device) DetachPT() error {
	dt := uapi.VfioDeviceDetachIommufdPt{Argsz: uint32(unsafe.Sizeof(uapi.VfioDeviceDetachIommufdPt{}))}
	return d.ioctl("VFIO_DEVICE_DETACH_IOMMUFD_PT", uapi.VFIO_DEVICE_DETACH_IOMMUFD_PT, unsafe.Pointer(&dt), "")
}
