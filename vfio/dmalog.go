package vfio

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/uapi"
)

// DMARange is a range of IOVAs a device's DMA logging covers.
type DMARange struct {
	IOVA, Length uint64
}

// DMALog is device DMA logging (VFIO_DEVICE_FEATURE_DMA_LOGGING_*, Linux
// 6.2): the device itself records which pages it wrote, for migration of
// a device whose IOMMU cannot track dirty pages (mlx5, pds and the mtty
// sample implement it; IOMMU-side tracking is ioasid's HWPT dirty
// tracking and type1's DirtyTracking). Only one log per device runs at a
// time; Stop ends it.
type DMALog struct {
	d        *Device
	pageSize uint64
}

const noDMALogging = "the device's driver does not log its DMA (in Linux: the mlx5 and pds variant drivers, and the mtty sample from 6.7)"

// StartDMALogging is DMA_LOGGING_START over ranges (each aligned to
// pageSize, none overlapping). pageSize is a hint: the device picks the
// granularity it can do, which PageSize reports.
func (d *Device) StartDMALogging(pageSize uint64, ranges ...DMARange) (*DMALog, error) {
	args := fmt.Sprintf("page size %#x, %d ranges", pageSize, len(ranges))
	call := kernel.Call{Op: "VFIO_DEVICE_FEATURE", Object: d.Name(), Args: "set DMA_LOGGING_START " + args}
	if len(ranges) == 0 {
		return nil, call.Refuse(unix.EINVAL, "no range to log")
	}
	if pageSize < 4096 || bits.OnesCount64(pageSize) != 1 {
		return nil, call.Refuse(unix.EINVAL, "the page size must be a power of two of at least 4 KiB")
	}
	rs := make([]uapi.VfioDeviceFeatureDmaLoggingRange, len(ranges))
	for i, r := range ranges {
		rs[i] = uapi.VfioDeviceFeatureDmaLoggingRange{Iova: r.IOVA, Length: r.Length}
	}
	ctl := uapi.VfioDeviceFeatureDmaLoggingControl{PageSize: pageSize, NumRanges: uint32(len(rs)), Ranges: uapi.SlicePointer(rs)}
	out, err := d.feature(deviceFeature{flags: uapi.VFIO_DEVICE_FEATURE_SET | uapi.VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
		payload: unsafe.Slice((*byte)(unsafe.Pointer(&ctl)), unsafe.Sizeof(ctl)), args: args,
		absent: noDMALogging, since: "6.2",
		hints: kernel.Hints{
			unix.EINVAL: kernel.Say("a range is not aligned to the page size, is empty or overlaps another"),
			unix.EBUSY:  kernel.Say("the device already logs its DMA: Stop that log first"),
			unix.E2BIG:  kernel.Say("more ranges than the kernel takes at once"),
		}})
	runtime.KeepAlive(rs) // the kernel read them through ctl.Ranges, now bytes in the payload
	if err != nil {
		return nil, err
	}
	ps := binary.NativeEndian.Uint64(out) // the granularity the device chose
	return &DMALog{d: d, pageSize: ps}, nil
}

// PageSize is the granularity the device logs at: one bit of a Report's
// bitmap per page of this size.
func (l *DMALog) PageSize() uint64 { return l.pageSize }

// BitmapWords is the length of the bitmap Report needs for length bytes.
func (l *DMALog) BitmapWords(length uint64) int {
	pages := (length + l.pageSize - 1) / l.pageSize
	return int((pages + 63) / 64)
}

// Report is DMA_LOGGING_REPORT: it sets bit i of bitmap (bit i%64 of word
// i/64) for each page at iova + i*PageSize the device wrote since the log
// started or the last report of that page, and clears the device's record
// of them. bitmap must hold BitmapWords(length) words; set bits are added
// to what it holds.
func (l *DMALog) Report(iova, length uint64, bitmap []uint64) error {
	args := fmt.Sprintf("iova %#x length %#x", iova, length)
	if need := l.BitmapWords(length); len(bitmap) < need {
		return kernel.Call{Op: "VFIO_DEVICE_FEATURE", Object: l.d.Name(), Args: "get DMA_LOGGING_REPORT " + args}.
			Refuse(unix.EINVAL, fmt.Sprintf("the bitmap has %d words, %#x bytes at %#x-byte pages need %d", len(bitmap), length, l.pageSize, need))
	}
	rep := uapi.VfioDeviceFeatureDmaLoggingReport{Iova: iova, Length: length, PageSize: l.pageSize, Bitmap: uapi.SlicePointer(bitmap)}
	_, err := l.d.feature(deviceFeature{flags: uapi.VFIO_DEVICE_FEATURE_GET | uapi.VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
		payload: unsafe.Slice((*byte)(unsafe.Pointer(&rep)), unsafe.Sizeof(rep)), args: args,
		absent: noDMALogging, since: "6.2",
		hints: kernel.Hints{
			unix.EINVAL:    kernel.Say("the range lies outside the logged ranges, or the log was stopped"),
			unix.EOVERFLOW: kernel.Say("iova + length wraps"),
		}})
	runtime.KeepAlive(bitmap)
	return err
}

// Stop is DMA_LOGGING_STOP: the device stops logging.
func (l *DMALog) Stop() error {
	_, err := l.d.feature(deviceFeature{flags: uapi.VFIO_DEVICE_FEATURE_SET | uapi.VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
		absent: noDMALogging, since: "6.2"})
	return err
}
