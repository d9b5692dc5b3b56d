package vfio

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/internal/sysfs"
	"github.com/vfioctl/vfioctl/uapi"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// CdevPath is the VFIO char device of a PCI device or mdev (/dev/vfio/devices/vfioN,
// Linux 6.6 with VFIO_DEVICE_CDEV), found through sysfs. A device that is
// not bound to vfio-pci has none, and the error says so; a bound device
// without one means the kernel lacks the feature (ErrNotSupported).
func CdevPath(bdf string) (string, error) {
	if n := sysfs.DeviceCdev(bdf); n != "" {
		return "/dev/vfio/devices/" + n, nil
	}
	if !sysfs.Exists(bdf) {
		return "", kernel.Call{Op: "find VFIO cdev", Object: bdf}.Refuse(unix.ENODEV, "no such PCI device or mdev")
	}
	if sysfs.IsMdevName(bdf) {
		if sysfs.Driver(bdf) == "" {
			return "", kernel.Call{Op: "find VFIO cdev", Object: bdf}.Refuse(unix.ENODEV, "the mdev is bound to no driver")
		}
		return "", &vfioerr.NotSupportedError{Feature: "VFIO device cdev for the mdev " + bdf, Version: "6.6",
			Reason: "the mdev has no vfio-dev node: the kernel lacks CONFIG_VFIO_DEVICE_CDEV"}
	}
	if drv := sysfs.Driver(bdf); !sysfs.IsVFIODriver(drv) {
		return "", kernel.Call{Op: "find VFIO cdev", Object: bdf}.Refuse(unix.ENODEV, "the device is bound to "+driverName(drv)+", not vfio-pci")
	}
	if sysfs.NoIOMMUDevice(bdf) {
		return "", &vfioerr.NotSupportedError{Feature: "VFIO device cdev for the no-IOMMU device " + bdf,
			Reason: "this kernel gives no-IOMMU devices no cdev: use a group backend"}
	}
	if spaprPlatform {
		return "", spaprOnlyLegacy(Cdev)
	}
	return "", &vfioerr.NotSupportedError{Feature: "VFIO device cdev for " + bdf, Version: "6.6",
		Reason: "the device is on vfio-pci but has no vfio-dev node: the kernel lacks CONFIG_VFIO_DEVICE_CDEV"}
}

func driverName(drv string) string {
	if drv == "" {
		return "no driver"
	}
	return drv
}

// OpenCdev opens a device char device. The device is not usable until it is
// bound to an iommufd (BindIOMMUFD) and attached to an IOAS or HWPT.
func OpenCdev(path string) (*Device, error) {
	fd, err := kernel.OpenPath(path, nil)
	if err != nil {
		return nil, err
	}
	// GET_INFO is refused until the device is bound: read it after Bind.
	return &Device{fd: fd}, nil
}

// NewCdev takes ownership of a pre-opened, not yet bound device cdev fd;
// name is what errors call it.
func NewCdev(fd int, name string) (*Device, error) {
	f, err := kernel.NewFD(fd, name)
	if err != nil {
		return nil, err
	}
	return &Device{fd: f}, nil
}

// BindIOMMUFD is VFIO_DEVICE_BIND_IOMMUFD: it binds the cdev to an iommufd
// (anything with FD(), normally an *ioasid.FD) and returns the device id
// iommufd knows it by.
func (d *Device) BindIOMMUFD(iommufd FDer) (uint32, error) {
	ifd, err := iommufd.FD()
	if err != nil {
		return 0, err
	}
	b := uapi.VfioDeviceBindIommufd{Iommufd: int32(ifd)}
	err = d.fd.Ioctl(kernel.Call{Op: "VFIO_DEVICE_BIND_IOMMUFD", Args: fmt.Sprintf("iommufd %d", ifd), Hints: bindHints, Since: "6.6"},
		func(fd int) error { return uapi.IoctlVfioDeviceBindIommufd(fd, &b) })
	if err != nil {
		return 0, err
	}
	if err := d.loadInfo(); err != nil {
		return 0, err
	}
	return b.OutDevid, nil
}

// bindHints explain VFIO_DEVICE_BIND_IOMMUFD's errnos.
var bindHints = kernel.Hints{
	unix.EPERM: unsafeInterruptsHint,
	unix.EBUSY: kernel.Say("the device is already open through its group, or bound"),
}

// attachHints explain VFIO_DEVICE_ATTACH_IOMMUFD_PT's errnos.
var attachHints = kernel.Hints{
	unix.EADDRINUSE: kernel.Say("the device is attached elsewhere and this IOMMU cannot replace its page table in place: DetachPT first"),
}

// AttachPT is VFIO_DEVICE_ATTACH_IOMMUFD_PT: attach the bound device to an
// IOAS or HWPT by id. It returns the id the kernel attached to (attaching to
// an IOAS yields the automatically created HWPT). Attaching an attached
// device replaces its page table in place; some IOMMU drivers
// (virtio-iommu in Linux 6.12) refuse that with EADDRINUSE: DetachPT first.
func (d *Device) AttachPT(id uint32) (uint32, error) {
	a := uapi.VfioDeviceAttachIommufdPt{PtId: id}
	err := d.fd.Ioctl(kernel.Call{Op: "VFIO_DEVICE_ATTACH_IOMMUFD_PT", Args: fmt.Sprintf("pt %d", id), Hints: attachHints},
		func(fd int) error { return uapi.IoctlVfioDeviceAttachIommufdPt(fd, &a) })
	if err != nil {
		return 0, err
	}
	return a.PtId, nil
}

// DetachPT is VFIO_DEVICE_DETACH_IOMMUFD_PT.
func (d *Device) DetachPT() error {
	var dt uapi.VfioDeviceDetachIommufdPt
	return d.fd.Ioctl(kernel.Call{Op: "VFIO_DEVICE_DETACH_IOMMUFD_PT"}, func(fd int) error { return uapi.IoctlVfioDeviceDetachIommufdPt(fd, &dt) })
}
