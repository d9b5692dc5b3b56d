package mdev

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/internal/sysfs"
	"github.com/vfioctl/vfioctl/pci"
)

// Parent is a device whose driver offers mediated devices.
type Parent struct {
	Name  string `json:"name"` // its device name (a PCI address, or a virtual device's name such as mtty)
	Types []Type `json:"types"`
}

// Type is one kind of mediated device a parent offers.
type Type struct {
	ID          string `json:"id"`   // e.g. mtty-2: what Create takes
	Name        string `json:"name"` // the driver's name for it, when it gives one
	Description string `json:"description,omitempty"`
	DeviceAPI   string `json:"device_api"` // the VFIO device API, e.g. vfio-pci
	Available   int    `json:"available_instances"`
}

// Device is a mediated device.
type Device struct {
	UUID   string `json:"uuid"`
	Parent string `json:"parent"`
	Type   string `json:"type"`
	Group  int    `json:"iommu_group"`
	// VFIOGroup and VFIOCdev are its device nodes ("" for none).
	VFIOGroup string `json:"vfio_group,omitempty"`
	VFIOCdev  string `json:"vfio_cdev,omitempty"`
	Driver    string `json:"driver,omitempty"`
}

func classDir() string { return filepath.Join(sysfs.Root, "class", "mdev_bus") }
func busDir() string   { return filepath.Join(sysfs.Root, "bus", "mdev", "devices") }

// Parents lists the devices that offer mediated devices, by name, with
// their types. None (no parent driver loaded) is an empty list.
func Parents() ([]Parent, error) {
	ents, err := os.ReadDir(classDir())
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Parent
	for _, e := range ents {
		p := Parent{Name: e.Name()}
		tdir := filepath.Join(classDir(), e.Name(), "mdev_supported_types")
		types, err := os.ReadDir(tdir)
		if err != nil {
			return nil, err
		}
		for _, t := range types {
			dir := filepath.Join(tdir, t.Name())
			avail, _ := strconv.Atoi(read(dir, "available_instances"))
			p.Types = append(p.Types, Type{ID: t.Name(), Name: read(dir, "name"), Description: read(dir, "description"),
				DeviceAPI: read(dir, "device_api"), Available: avail})
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func read(dir, name string) string {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// RandomUUID is a new random (version 4) UUID, for Create.
func RandomUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:]), nil
}

// Create makes a mediated device of type typ on parent with the given UUID
// ("" for a random one) and returns it.
func Create(parent, typ, uuid string) (*Device, error) {
	if uuid == "" {
		var err error
		if uuid, err = RandomUUID(); err != nil {
			return nil, err
		}
	}
	path := filepath.Join(classDir(), parent, "mdev_supported_types", typ, "create")
	c := kernel.Call{Op: "create mdev", Object: parent + " type " + typ, Args: uuid, Hints: createHints}
	if !sysfs.IsMdevName(uuid) {
		return nil, c.Refuse(unix.EINVAL, "not a lowercase UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")
	}
	if _, err := os.Stat(filepath.Dir(path)); err != nil {
		return nil, c.Refuse(unix.ENOENT, "no such parent or type (see Parents)")
	}
	if err := write(path, uuid); err != nil {
		return nil, c.Fail(err)
	}
	return Get(uuid)
}

var createHints = kernel.Hints{
	unix.EEXIST: kernel.Say("a mediated device with this UUID exists"),
	unix.ENOSPC: kernel.Say("the type has no instances left (available_instances is 0)"),
}

// write writes val to a sysfs attribute and returns the errno the kernel
// answered, unwrapped.
func write(path, val string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return unwrap(err)
	}
	_, err = f.Write([]byte(val))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return unwrap(err)
}

func unwrap(err error) error {
	var errno unix.Errno
	if pe, ok := err.(*os.PathError); ok {
		if e, ok := pe.Err.(unix.Errno); ok {
			errno = e
		}
	}
	if errno != 0 {
		return errno
	}
	return err
}

// Get describes the mediated device uuid.
func Get(uuid string) (*Device, error) {
	dir := filepath.Join(busDir(), uuid)
	if !sysfs.IsMdevName(uuid) {
		return nil, kernel.Call{Op: "find mdev", Object: uuid}.Refuse(unix.EINVAL, "not a lowercase UUID")
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, kernel.Call{Op: "find mdev", Object: uuid}.Refuse(unix.ENODEV, "no such mediated device")
	}
	d := &Device{UUID: uuid, Group: -1, Driver: sysfs.Driver(uuid)}
	if l, err := filepath.EvalSymlinks(dir); err == nil {
		d.Parent = filepath.Base(filepath.Dir(l))
	}
	if l, err := os.Readlink(filepath.Join(dir, "mdev_type")); err == nil {
		d.Type = filepath.Base(l)
	}
	if n, err := sysfs.DeviceGroup(uuid); err == nil {
		d.Group, d.VFIOGroup = n, sysfs.GroupNode(n)
	}
	if c := sysfs.DeviceCdev(uuid); c != "" {
		d.VFIOCdev = "/dev/vfio/devices/" + c
	}
	return d, nil
}

// Devices lists the mediated devices, by UUID.
func Devices() ([]*Device, error) {
	ents, err := os.ReadDir(busDir())
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*Device
	for _, e := range ents {
		d, err := Get(e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// Remove removes the mediated device uuid. While a process holds its
// group or cdev open the kernel's remove would block until it closes
// them: Remove refuses instead with a *pci.BusyError naming the holders.
func Remove(uuid string) error {
	d, err := Get(uuid)
	if err != nil {
		return err
	}
	if h := pci.HoldersOf(d.VFIOGroup, d.VFIOCdev); len(h) > 0 {
		return &pci.BusyError{Address: uuid, Holders: h}
	}
	if err := write(filepath.Join(busDir(), uuid, "remove"), "1"); err != nil {
		return kernel.Call{Op: "remove mdev", Object: uuid}.Fail(err)
	}
	return nil
}
