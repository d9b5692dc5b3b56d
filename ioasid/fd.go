package ioasid

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/uapi"
)

// Path is the iommufd device node.
const Path = "/dev/iommu"

// ErrNotSupported matches errors for features the running kernel lacks.
var ErrNotSupported = kernel.ErrNotSupported

// FD is an open iommufd.
type FD struct {
	fd *kernel.FD
}

// Open opens /dev/iommu.
func Open() (*FD, error) { return OpenPath(Path) }

// OpenPath opens an iommufd at path (on IOMMUFD_VFIO_CONTAINER kernels,
// /dev/vfio/vfio is one too).
func OpenPath(path string) (*FD, error) {
	fd, err := kernel.OpenPath(path)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, &kernel.NotSupportedError{Feature: "iommufd (" + path + ")", Version: "6.2", Reason: "the kernel lacks CONFIG_IOMMUFD"}
		}
		return nil, err
	}
	return &FD{fd: fd}, nil
}

// NewFD takes ownership of a pre-opened iommufd.
func NewFD(fd int, name string) (*FD, error) {
	f, err := kernel.NewFD(fd, name)
	if err != nil {
		return nil, err
	}
	return &FD{fd: f}, nil
}

// FD is the raw descriptor: pass the *FD itself to vfio.Group.SetContainer
// or vfio.Device.BindIOMMUFD.
func (f *FD) FD() (int, error) { return f.fd.Int() }

// Name is the path the FD was opened as.
func (f *FD) Name() string { return f.fd.Name() }

// Close releases the iommufd and every object in it.
func (f *FD) Close() error { return f.fd.Close() }

// ioctl issues an iommufd ioctl whose argument struct starts with its size;
// ENOTTY becomes a NotSupportedError naming the kernel version.
func (f *FD) ioctl(op string, req uint, arg unsafe.Pointer, args string) error {
	if _, err := f.fd.Ioctl(req, uintptr(arg)); err != nil {
		if errors.Is(err, unix.ENOTTY) {
			if v, ok := uapi.Since[req]; ok {
				// Or f is not an iommufd at all: the name says which file.
				return &kernel.NotSupportedError{Feature: op + " on " + f.fd.Name(), Version: v}
			}
		}
		return &kernel.Error{Op: op, Object: f.fd.Name(), Args: args, Err: err}
	}
	return nil
}

// Destroy is IOMMU_DESTROY: free any object by id.
func (f *FD) Destroy(id uint32) error {
	d := uapi.IommuDestroy{Size: uint32(unsafe.Sizeof(uapi.IommuDestroy{})), Id: id}
	return f.ioctl("IOMMU_DESTROY", uapi.IOMMU_DESTROY, unsafe.Pointer(&d), fmt.Sprintf("id %d", id))
}

// Option ids and operations of IOMMU_OPTION.
const (
	OptionRlimitMode = uapi.IOMMU_OPTION_RLIMIT_MODE // 0: per user (default), 1: per process
	OptionHugePages  = uapi.IOMMU_OPTION_HUGE_PAGES  // per IOAS: 1 (default) combines pages
)

// GetOption is IOMMU_OPTION with IOMMU_OPTION_OP_GET (object 0 for global options).
func (f *FD) GetOption(option, object uint32) (uint64, error) {
	o := uapi.IommuOption{Size: uint32(unsafe.Sizeof(uapi.IommuOption{})), OptionId: option, Op: uapi.IOMMU_OPTION_OP_GET, ObjectId: object}
	err := f.ioctl("IOMMU_OPTION", uapi.IOMMU_OPTION, unsafe.Pointer(&o), fmt.Sprintf("get option %d object %d", option, object))
	return o.Val64, err
}

// SetOption is IOMMU_OPTION with IOMMU_OPTION_OP_SET.
func (f *FD) SetOption(option, object uint32, val uint64) error {
	o := uapi.IommuOption{Size: uint32(unsafe.Sizeof(uapi.IommuOption{})), OptionId: option, Op: uapi.IOMMU_OPTION_OP_SET, ObjectId: object, Val64: val}
	return f.ioctl("IOMMU_OPTION", uapi.IOMMU_OPTION, unsafe.Pointer(&o), fmt.Sprintf("set option %d object %d = %d", option, object, val))
}

// CompatIOAS is IOMMU_VFIO_IOAS GET: the IOAS that the VFIO compat
// container (type1 ioctls on this FD, or groups set to it) uses.
func (f *FD) CompatIOAS() (*IOAS, error) {
	v := uapi.IommuVfioIoas{Size: uint32(unsafe.Sizeof(uapi.IommuVfioIoas{})), Op: uapi.IOMMU_VFIO_IOAS_GET}
	if err := f.ioctl("IOMMU_VFIO_IOAS", uapi.IOMMU_VFIO_IOAS, unsafe.Pointer(&v), "get"); err != nil {
		return nil, err
	}
	return &IOAS{fd: f, id: v.IoasId, borrowed: true}, nil
}

// SetCompatIOAS is IOMMU_VFIO_IOAS SET: make ioas the compat IOAS.
func (f *FD) SetCompatIOAS(ioas *IOAS) error {
	v := uapi.IommuVfioIoas{Size: uint32(unsafe.Sizeof(uapi.IommuVfioIoas{})), Op: uapi.IOMMU_VFIO_IOAS_SET, IoasId: ioas.id}
	return f.ioctl("IOMMU_VFIO_IOAS", uapi.IOMMU_VFIO_IOAS, unsafe.Pointer(&v), fmt.Sprintf("set %d", ioas.id))
}

// ClearCompatIOAS is IOMMU_VFIO_IOAS CLEAR: disable VFIO compatibility.
func (f *FD) ClearCompatIOAS() error {
	v := uapi.IommuVfioIoas{Size: uint32(unsafe.Sizeof(uapi.IommuVfioIoas{})), Op: uapi.IOMMU_VFIO_IOAS_CLEAR}
	return f.ioctl("IOMMU_VFIO_IOAS", uapi.IOMMU_VFIO_IOAS, unsafe.Pointer(&v), "clear")
}
