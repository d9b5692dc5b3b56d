package ioasid

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/uapi"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// Path is the iommufd device node.
const Path = "/dev/iommu"

// FD is an open iommufd. Its methods are safe for concurrent use; after
// Close every one fails with ErrClosed, and so does every object in it
// (the kernel destroyed them with the file).
type FD struct {
	fd *kernel.FD
}

// Open opens /dev/iommu.
func Open() (*FD, error) { return OpenPath(Path) }

// OpenPath opens an iommufd at path (on IOMMUFD_VFIO_CONTAINER kernels,
// /dev/vfio/vfio is one too).
func OpenPath(path string) (*FD, error) {
	fd, err := kernel.OpenPath(path, nil)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, &vfioerr.NotSupportedError{Feature: "iommufd (" + path + ")", Version: "6.2", Reason: "no such device node: the kernel lacks CONFIG_IOMMUFD"}
		}
		return nil, err
	}
	return &FD{fd: fd}, nil
}

// NewFD takes ownership of a pre-opened iommufd (for example one handed
// over by a privileged helper).
func NewFD(fd int) (*FD, error) {
	f, err := kernel.NewFD(fd, kernel.NameOf(fd, fmt.Sprintf("iommufd %d", fd)))
	if err != nil {
		return nil, err
	}
	return &FD{fd: f}, nil
}

// FD is the raw descriptor: pass the *FD itself to vfio.Group.SetContainer
// or vfio.Device.BindIOMMUFD. It stays owned by f.
func (f *FD) FD() (int, error) { return f.fd.Int() }

// Dup returns a new descriptor for the iommufd, owned by the caller (to
// send to another process).
func (f *FD) Dup() (int, error) { return f.fd.Dup() }

// Name is the path the FD was opened as.
func (f *FD) Name() string { return f.fd.Name() }

// Control runs fn with the raw descriptor, holding f open until fn
// returns (as syscall.RawConn.Control does), for ioctls this package does
// not wrap (the kernel's IOMMU_TEST_CMD, a vendor's). fn must not close
// or keep the descriptor. After Close it returns ErrClosed.
func (f *FD) Control(fn func(fd int) error) error { return f.fd.Do(fn) }

// Close releases the iommufd and every object in it. A second Close fails
// with ErrClosed.
func (f *FD) Close() error { return f.fd.Close() }

// call describes iommufd ioctl req, named op, with its arguments: ENOTTY
// from it means a kernel older than the version that added it (uapi.Since),
// or a descriptor that is not an iommufd (the error names the file).
func call(op string, req uint, args string) kernel.Call {
	return kernel.Call{Op: op, Args: args, Since: uapi.Since[req]}
}

// Destroy is IOMMU_DESTROY: free any object by id. Prefer the objects'
// Close, which also keeps them from being used afterwards.
func (f *FD) Destroy(id uint32) error {
	d := uapi.IommuDestroy{Id: id}
	c := call("IOMMU_DESTROY", uapi.IOMMU_DESTROY, fmt.Sprintf("id %d", id))
	c.Hints = destroyHints
	return f.fd.Ioctl(c, func(fd int) error { return uapi.IoctlIommuDestroy(fd, &d) })
}

var destroyHints = kernel.Hints{
	unix.EBUSY: kernel.Say("the object is in use (a device is attached to it, or another object refers to it)"),
}

// Option ids and operations of IOMMU_OPTION.
const (
	OptionRlimitMode = uapi.IOMMU_OPTION_RLIMIT_MODE // global: 0 accounts pinned pages per user (default), 1 per process
	OptionHugePages  = uapi.IOMMU_OPTION_HUGE_PAGES  // per IOAS: 1 (default) combines pages
)

// GetOption is IOMMU_OPTION with IOMMU_OPTION_OP_GET (object 0 for global options).
func (f *FD) GetOption(option, object uint32) (uint64, error) {
	o := uapi.IommuOption{OptionId: option, Op: uapi.IOMMU_OPTION_OP_GET, ObjectId: object}
	err := f.fd.Ioctl(call("IOMMU_OPTION", uapi.IOMMU_OPTION, fmt.Sprintf("get option %d object %d", option, object)), func(fd int) error { return uapi.IoctlIommuOption(fd, &o) })
	return o.Val64, err
}

// SetOption is IOMMU_OPTION with IOMMU_OPTION_OP_SET.
func (f *FD) SetOption(option, object uint32, val uint64) error {
	o := uapi.IommuOption{OptionId: option, Op: uapi.IOMMU_OPTION_OP_SET, ObjectId: object, Val64: val}
	c := call("IOMMU_OPTION", uapi.IOMMU_OPTION, fmt.Sprintf("set option %d object %d = %d", option, object, val))
	if option == OptionRlimitMode {
		c.Hints = rlimitModeHints
	}
	return f.fd.Ioctl(c, func(fd int) error { return uapi.IoctlIommuOption(fd, &o) })
}

var rlimitModeHints = kernel.Hints{
	unix.EPERM: kernel.Say("changing the accounting mode needs CAP_SYS_RESOURCE"),
	unix.EBUSY: kernel.Say("the accounting mode can only change before any object (IOAS, device binding) exists on the iommufd"),
}

// SetRlimitPerProcess is IOMMU_OPTION_RLIMIT_MODE: with true, pages pinned
// through f count against RLIMIT_MEMLOCK of the process that maps them
// rather than of its user (as the type1 container counts them). It needs
// CAP_SYS_RESOURCE, and the kernel takes it only while f holds no object
// (EBUSY after): a privileged helper sets it right after opening, before
// handing f to an unprivileged VMM.
func (f *FD) SetRlimitPerProcess(perProcess bool) error {
	var v uint64
	if perProcess {
		v = 1
	}
	return f.SetOption(OptionRlimitMode, 0, v)
}

// CompatIOAS is IOMMU_VFIO_IOAS GET: the IOAS that the VFIO compat
// container (type1 ioctls on this FD, or groups set to it) uses. It is
// borrowed: its Close does not destroy it.
func (f *FD) CompatIOAS() (*IOAS, error) {
	v := uapi.IommuVfioIoas{Op: uapi.IOMMU_VFIO_IOAS_GET}
	if err := f.fd.Ioctl(call("IOMMU_VFIO_IOAS", uapi.IOMMU_VFIO_IOAS, "get"), func(fd int) error { return uapi.IoctlIommuVfioIoas(fd, &v) }); err != nil {
		return nil, err
	}
	return &IOAS{object: object{fd: f, kind: "ioas", id: v.IoasId, borrowed: true}}, nil
}

// SetCompatIOAS is IOMMU_VFIO_IOAS SET: make ioas the compat IOAS.
func (f *FD) SetCompatIOAS(ioas *IOAS) error {
	return ioas.use("IOMMU_VFIO_IOAS", func(id uint32) error {
		v := uapi.IommuVfioIoas{Op: uapi.IOMMU_VFIO_IOAS_SET, IoasId: id}
		return f.fd.Ioctl(call("IOMMU_VFIO_IOAS", uapi.IOMMU_VFIO_IOAS, fmt.Sprintf("set %d", id)), func(fd int) error { return uapi.IoctlIommuVfioIoas(fd, &v) })
	})
}

// ClearCompatIOAS is IOMMU_VFIO_IOAS CLEAR: disable VFIO compatibility.
func (f *FD) ClearCompatIOAS() error {
	v := uapi.IommuVfioIoas{Op: uapi.IOMMU_VFIO_IOAS_CLEAR}
	return f.fd.Ioctl(call("IOMMU_VFIO_IOAS", uapi.IOMMU_VFIO_IOAS, "clear"), func(fd int) error { return uapi.IoctlIommuVfioIoas(fd, &v) })
}
