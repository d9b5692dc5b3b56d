package vfio

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/uapi"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// FeatureProbe is VFIO_DEVICE_FEATURE with VFIO_DEVICE_FEATURE_PROBE:
// whether the device supports GET and/or SET of a feature
// (uapi.VFIO_DEVICE_FEATURE_MIGRATION, ..._LOW_POWER_ENTRY ...). The kernel
// answers one access mode per probe, so both are asked.
func (d *Device) FeatureProbe(feature uint32) (get, set bool, err error) {
	probe := func(mode uint32) (bool, error) {
		_, err := d.feature(deviceFeature{flags: uapi.VFIO_DEVICE_FEATURE_PROBE | mode | feature})
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, unix.ENOTTY), errors.Is(err, unix.EINVAL), errors.Is(err, unix.EOPNOTSUPP):
			return false, nil
		}
		return false, err
	}
	if get, err = probe(uapi.VFIO_DEVICE_FEATURE_GET); err != nil {
		return
	}
	set, err = probe(uapi.VFIO_DEVICE_FEATURE_SET)
	return
}

// featureNames are the VFIO_DEVICE_FEATURE_* names errors show.
var featureNames = map[uint32]string{
	uapi.VFIO_DEVICE_FEATURE_PCI_VF_TOKEN:                "PCI_VF_TOKEN",
	uapi.VFIO_DEVICE_FEATURE_MIGRATION:                   "MIGRATION",
	uapi.VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE:            "MIG_DEVICE_STATE",
	uapi.VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY:             "LOW_POWER_ENTRY",
	uapi.VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP: "LOW_POWER_ENTRY_WITH_WAKEUP",
	uapi.VFIO_DEVICE_FEATURE_LOW_POWER_EXIT:              "LOW_POWER_EXIT",
	uapi.VFIO_DEVICE_FEATURE_DMA_LOGGING_START:           "DMA_LOGGING_START",
	uapi.VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP:            "DMA_LOGGING_STOP",
	uapi.VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT:          "DMA_LOGGING_REPORT",
	uapi.VFIO_DEVICE_FEATURE_MIG_DATA_SIZE:               "MIG_DATA_SIZE",
	uapi.VFIO_DEVICE_FEATURE_BUS_MASTER:                  "BUS_MASTER",
}

// deviceFeature is one VFIO_DEVICE_FEATURE call: the flags (GET, SET or
// PROBE | the feature, which names it in errors), its payload, and what the
// device lacks when the kernel answers ENOTTY (the driver does not
// implement the feature): then the error is a NotSupportedError with that
// reason and, on a kernel older than since (the Linux that added the
// feature), that version.
type deviceFeature struct {
	flags   uint32
	payload []byte
	args    string
	hints   kernel.Hints
	absent  string
	since   string
}

// feature issues VFIO_DEVICE_FEATURE and returns the payload as the kernel
// left it.
func (d *Device) feature(f deviceFeature) ([]byte, error) {
	hdr := int(unsafe.Sizeof(uapi.VfioDeviceFeature{}))
	buf := kernel.HeapBytes(hdr + len(f.payload))
	(*uapi.VfioDeviceFeature)(unsafe.Pointer(&buf[0])).Flags = f.flags
	copy(buf[hdr:], f.payload)
	mode := "get"
	switch {
	case f.flags&uapi.VFIO_DEVICE_FEATURE_PROBE != 0:
		mode = "probe"
	case f.flags&uapi.VFIO_DEVICE_FEATURE_SET != 0:
		mode = "set"
	}
	name := featureNames[f.flags&uapi.VFIO_DEVICE_FEATURE_MASK]
	args := mode + " " + name
	if f.args != "" {
		args += " " + f.args
	}
	err := d.fd.Ioctl(kernel.Call{Op: "VFIO_DEVICE_FEATURE", Args: args, Hints: f.hints},
		func(fd int) error { return uapi.IoctlVfioDeviceFeature(fd, buf) })
	if errors.Is(err, unix.ENOTTY) && f.absent != "" {
		e := &vfioerr.NotSupportedError{Feature: fmt.Sprintf("VFIO_DEVICE_FEATURE_%s on %s", name, d.Name()), Reason: f.absent}
		if f.since != "" && kernel.Before(f.since) {
			e.Version = f.since // else the kernel has it and the driver does not
		}
		return nil, e
	}
	if err != nil {
		return nil, err
	}
	return buf[hdr:], nil
}
