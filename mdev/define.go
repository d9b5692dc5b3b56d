package mdev

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/internal/records"
	"github.com/vfioctl/vfioctl/internal/sysfs"
)

// DefinitionsDir keeps the mediated devices that are made again at every
// boot, one JSON file per UUID (as mdevctl keeps /etc/mdevctl.d). The boot
// hooks `vfioctl persist install` writes call Start: at boot, and when a
// parent driver registers (its MDEV_STATE=registered uevent).
var DefinitionsDir = "/etc/vfioctl/mdev"

// ErrNotDefined: the UUID has no definition.
var ErrNotDefined = errors.New("no mediated device definition")

// Definition is a mediated device to create at every boot.
type Definition struct {
	UUID   string `json:"uuid"`
	Parent string `json:"parent"`
	Type   string `json:"type"`
	Saved  string `json:"saved"` // RFC 3339
}

// Define saves a definition (replacing one of the same UUID). It creates
// nothing now: Create or Start does that. As mdevctl define.
func Define(parent, typ, uuid string) (Definition, error) {
	d := Definition{UUID: uuid, Parent: parent, Type: typ, Saved: time.Now().UTC().Format(time.RFC3339)}
	c := kernel.Call{Op: "define mdev", Object: parent + " type " + typ, Args: uuid}
	switch {
	case !sysfs.IsMdevName(uuid):
		return d, c.Refuse(unix.EINVAL, "not a lowercase UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")
	case parent == "" || typ == "" || strings.ContainsAny(parent+typ, "/\n"):
		return d, c.Refuse(unix.EINVAL, "a parent and a type are names, as Parents lists them")
	}
	if err := records.Write(DefinitionsDir, uuid, d); err != nil {
		return d, c.Fail(err)
	}
	return d, nil
}

// Undefine deletes the definition of uuid; the device, if it exists,
// stays until Remove.
func Undefine(uuid string) error {
	if !sysfs.IsMdevName(uuid) {
		return kernel.Call{Op: "undefine mdev", Object: uuid}.Refuse(unix.EINVAL, "not a lowercase UUID")
	}
	err := records.Delete(DefinitionsDir, uuid)
	if errors.Is(err, records.ErrNone) {
		return fmt.Errorf("mdev: %s: %w", uuid, ErrNotDefined)
	}
	return err
}

// Definitions lists the saved definitions, by UUID.
func Definitions() ([]Definition, error) {
	ds, err := records.List(DefinitionsDir, func(name string, d Definition) error {
		if !sysfs.IsMdevName(d.UUID) || d.UUID != name {
			return fmt.Errorf("defines %q", d.UUID)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mdev: definition %w", err)
	}
	return ds, nil
}

// Started is what Start did with one definition.
type Started struct {
	UUID string `json:"uuid"`
	// Result: "created", "exists" (a device of that UUID is there),
	// "parent absent" (kept for when its driver registers) or "failed".
	Result string `json:"result"`
	Error  string `json:"error,omitempty"`
}

// Start creates the defined mediated devices that do not exist (only
// those of parent when parent is not empty), as a boot hook does. The
// error joins the failures, each also reported in its Started.
func Start(parent string) ([]Started, error) {
	defs, err := Definitions()
	if err != nil {
		return nil, err
	}
	var out []Started
	var errs []error
	for _, d := range defs {
		if parent != "" && d.Parent != parent {
			continue
		}
		s := Started{UUID: d.UUID}
		if _, err := os.Stat(filepath.Join(busDir(), d.UUID)); err == nil {
			s.Result = "exists"
		} else if _, err := os.Stat(filepath.Join(classDir(), d.Parent)); err != nil {
			s.Result = "parent absent"
		} else if _, err := Create(d.Parent, d.Type, d.UUID); err != nil {
			s.Result, s.Error = "failed", err.Error()
			errs = append(errs, err)
		} else {
			s.Result = "created"
		}
		out = append(out, s)
	}
	return out, errors.Join(errs...)
}
