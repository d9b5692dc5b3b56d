package pci

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/vfioctl/vfioctl/internal/records"
)

// PersistDir keeps the bindings that outlive a reboot, one JSON file per
// device named by its address (as driverctl keeps /etc/driverctl.d). Boot
// hooks (a udev rule, a systemd unit) call ApplyPersisted to carry them out.
var PersistDir = "/etc/vfioctl/persist"

// ErrNotPersisted: the device has no saved binding.
var ErrNotPersisted = errors.New("no saved binding")

// Persisted is a binding saved to be made again at every boot: the device
// and the BindOptions it was bound with.
type Persisted struct {
	Address string `json:"address"`
	Group   bool   `json:"group,omitempty"`
	Force   bool   `json:"force,omitempty"`
	NoIOMMU bool   `json:"noiommu,omitempty"`
	Owner   *Owner `json:"owner,omitempty"`
	Saved   string `json:"saved"` // RFC 3339
}

// Options are the BindOptions the binding is made with.
func (p Persisted) Options() BindOptions {
	return BindOptions{Group: p.Group, Force: p.Force, NoIOMMU: p.NoIOMMU, Owner: p.Owner}
}

// Persist saves a binding for addr with opts (replacing one saved before).
// It binds nothing now: Bind does that.
func Persist(addr string, opts BindOptions) (Persisted, error) {
	a, err := ParseAddress(addr)
	if err != nil {
		return Persisted{}, err
	}
	p := Persisted{Address: a.String(), Group: opts.Group, Force: opts.Force, NoIOMMU: opts.NoIOMMU, Owner: opts.Owner,
		Saved: time.Now().UTC().Format(time.RFC3339)}
	if err := records.Write(PersistDir, p.Address, p); err != nil {
		return p, fmt.Errorf("pci: save binding: %w", err)
	}
	return p, nil
}

// Unpersist deletes the saved binding of addr, so the next boot leaves the
// device to its own driver. It unbinds nothing now.
func Unpersist(addr string) error {
	a, err := ParseAddress(addr)
	if err != nil {
		return err
	}
	err = records.Delete(PersistDir, a.String())
	if errors.Is(err, records.ErrNone) {
		return fmt.Errorf("pci: %s: %w", a, ErrNotPersisted)
	}
	return err
}

// ListPersisted returns the saved bindings, sorted by address.
func ListPersisted() ([]Persisted, error) {
	ps, err := records.List(PersistDir, checkPersisted)
	if err != nil {
		return nil, fmt.Errorf("pci: saved binding %w", err)
	}
	return ps, nil
}

// checkPersisted refuses a saved binding whose file is not named for its
// device.
func checkPersisted(name string, p Persisted) error {
	if _, err := ParseAddress(p.Address); err != nil || p.Address != name {
		return fmt.Errorf("names device %q", p.Address)
	}
	return nil
}

// Applied is what ApplyPersisted did for one saved binding.
type Applied struct {
	Address string `json:"address"`
	// Result: "bound", "already bound" (the owner is set again), "absent"
	// (no such device now: kept for when it appears) or "failed".
	Result string  `json:"result"`
	Bound  []Bound `json:"bound,omitempty"`
	Error  string  `json:"error,omitempty"`
}

// ApplyPersisted makes the saved bindings (only addr's when addr is not
// empty), as a boot hook does. A device that is absent is reported, not an
// error; the error joins the failures, each also reported in its Applied.
func ApplyPersisted(addr string) ([]Applied, error) {
	var saved []Persisted
	if addr != "" {
		a, err := ParseAddress(addr)
		if err != nil {
			return nil, err
		}
		p, err := records.Read(records.Path(PersistDir, a.String()), checkPersisted)
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("pci: %s: %w", a, ErrNotPersisted)
		}
		if err != nil {
			return nil, err
		}
		saved = []Persisted{p}
	} else {
		var err error
		if saved, err = ListPersisted(); err != nil {
			return nil, err
		}
	}
	var out []Applied
	var errs []error
	for _, p := range saved {
		r := Applied{Address: p.Address}
		d, err := Get(p.Address)
		switch {
		case errors.Is(err, ErrNoDevice):
			r.Result = "absent"
		case err != nil:
			r.Result, r.Error = "failed", err.Error()
			errs = append(errs, err)
		case d.Driver == VFIODriver:
			r.Result = "already bound"
			if p.Owner != nil {
				if _, err := SetOwner(p.Address, *p.Owner); err != nil {
					r.Result, r.Error = "failed", err.Error()
					errs = append(errs, err)
				}
			}
		default:
			b, err := Bind(p.Address, p.Options())
			r.Bound = b
			r.Result = "bound"
			if err != nil {
				r.Result, r.Error = "failed", err.Error()
				errs = append(errs, err)
			}
		}
		out = append(out, r)
	}
	return out, errors.Join(errs...)
}
