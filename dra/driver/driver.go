package driver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/dynamic-resource-allocation/resourceslice"

	"github.com/vfioctl/vfioctl/internal/records"
	"github.com/vfioctl/vfioctl/pci"
)

// DefaultName is the driver name DeviceClasses select on.
const DefaultName = "vfio.vfioctl.dev"

// Options configure a Driver.
type Options struct {
	Name      string    // the DRA driver name (DefaultName)
	NodeName  string    // the pool: one per node
	Selection Selection // what to publish
	StateDir  string    // checkpoints of prepared claims
	CDIDir    string    // where claims' CDI specs go (/var/run/cdi)
	Default   Config    // before a class's or claim's configuration
	Logger    *slog.Logger
}

// Driver implements kubeletplugin.DRAPlugin on a Host.
type Driver struct {
	opts Options
	host Host
	log  *slog.Logger
	mu   sync.Mutex // one prepare or unprepare at a time, beside the helper's own serialization

	fatal func(error) // Serve's: a fatal background error ends it
}

// New checks opts and returns a driver for host.
func New(opts Options, host Host) (*Driver, error) {
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	if opts.NodeName == "" || opts.StateDir == "" || opts.CDIDir == "" {
		return nil, errors.New("driver: NodeName, StateDir and CDIDir are required")
	}
	if opts.Default.Policy == "" {
		opts.Default.Policy = "prefer-iommufd"
	}
	if err := os.MkdirAll(opts.StateDir, 0o700); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Driver{opts: opts, host: host, log: log.With("driver", opts.Name, "node", opts.NodeName)}, nil
}

// Resources is what the node publishes now: one pool named for the node,
// one slice of the devices the Selection picks.
func (d *Driver) Resources() (resourceslice.DriverResources, []Published, error) {
	pub, err := d.published()
	if err != nil {
		return resourceslice.DriverResources{}, nil, err
	}
	devs := make([]resourceapi.Device, 0, len(pub))
	for _, p := range pub {
		devs = append(devs, p.Device)
	}
	return resourceslice.DriverResources{Pools: map[string]resourceslice.Pool{
		d.opts.NodeName: {Slices: []resourceslice.Slice{{Devices: devs}}},
	}}, pub, nil
}

func (d *Driver) published() ([]Published, error) {
	devs, err := d.host.Devices()
	if err != nil {
		return nil, err
	}
	groups, err := d.host.Groups()
	if err != nil {
		return nil, err
	}
	pub, skipped := Publish(devs, d.opts.Selection, groups, d.host)
	for a, why := range skipped {
		d.log.Debug("not published", "address", a, "reason", why)
	}
	return pub, nil
}

// PrepareResourceClaims binds each claim's devices and writes its CDI spec
// (kubeletplugin.DRAPlugin).
func (d *Driver) PrepareResourceClaims(ctx context.Context, claims []*resourceapi.ResourceClaim) (map[types.UID]kubeletplugin.PrepareResult, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[types.UID]kubeletplugin.PrepareResult{}
	for _, c := range claims {
		devs, err := d.prepare(c)
		if err != nil {
			d.log.Error("prepare", "claim", c.Namespace+"/"+c.Name, "uid", c.UID, "err", err)
		} else {
			d.log.Info("prepared", "claim", c.Namespace+"/"+c.Name, "uid", c.UID, "devices", len(devs))
		}
		out[c.UID] = kubeletplugin.PrepareResult{Devices: devs, Err: err}
	}
	return out, nil
}

func (d *Driver) prepare(c *resourceapi.ResourceClaim) ([]kubeletplugin.Device, error) {
	uid := string(c.UID)
	who := fmt.Sprintf("claim %s/%s", c.Namespace, c.Name)
	if cp, err := d.loadCheckpoint(uid); err == nil {
		if err := d.verify(cp); err != nil {
			return nil, fmt.Errorf("%s was prepared before, but %w: not trusting its checkpoint", who, err)
		}
		return cp.result(), nil // prepared already (a restarted kubelet or plugin)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: its checkpoint: %w", who, err)
	}
	if c.Status.Allocation == nil {
		return nil, fmt.Errorf("%s is not allocated", who)
	}
	cfg, err := claimConfig(d.opts.Name, d.opts.Default, c.Status.Allocation)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", who, err)
	}
	pub, err := d.published()
	if err != nil {
		return nil, err
	}
	byName := map[string]Published{}
	for _, p := range pub {
		byName[p.Name] = p
	}
	cp := &prepared{UID: uid, Namespace: c.Namespace, Name: c.Name, Kind: d.opts.Name + "/claim-" + uid, Owner: cfg.Owner}
	var addrs []string
	for _, r := range c.Status.Allocation.Devices.Results {
		if r.Driver != d.opts.Name {
			continue
		}
		if r.Pool != d.opts.NodeName {
			return nil, fmt.Errorf("%s: device %s is in pool %s, not this node's (%s)", who, r.Device, r.Pool, d.opts.NodeName)
		}
		p, ok := byName[r.Device]
		if !ok {
			return nil, fmt.Errorf("%s: device %s is not published on this node now (removed, or no longer picked)", who, r.Device)
		}
		cp.Devices = append(cp.Devices, preparedDev{Requests: []string{r.Request}, Pool: r.Pool, Device: r.Device, Addresses: p.Addresses})
		addrs = append(addrs, p.Addresses...)
	}
	if len(addrs) == 0 {
		return nil, nil // no device of this driver in the claim (an empty spec would name every bound device)
	}
	if err := d.notPreparedElsewhere(uid, addrs); err != nil {
		return nil, fmt.Errorf("%s: %w", who, err)
	}
	for _, dev := range cp.Devices {
		bound, err := d.bind(dev.Addresses, cfg.Owner)
		cp.Bound = append(cp.Bound, bound...)
		if err != nil {
			d.undo(cp)
			return nil, fmt.Errorf("%s: device %s: %w", who, dev.Device, err)
		}
	}
	names, backend, err := d.host.WriteSpec(addrs, cfg.Policy, cp.Kind, d.opts.CDIDir)
	if err != nil {
		d.undo(cp)
		return nil, fmt.Errorf("%s: CDI spec (backend policy %s): %w", who, cfg.Policy, err)
	}
	cp.Backend = backend
	for i := range cp.Devices {
		for _, a := range cp.Devices[i].Addresses {
			cp.Devices[i].CDI = append(cp.Devices[i].CDI, names[a])
		}
	}
	if err := d.saveCheckpoint(cp); err != nil {
		_ = d.host.RemoveSpec(cp.Kind, d.opts.CDIDir)
		d.undo(cp)
		return nil, fmt.Errorf("%s: checkpoint: %w", who, err)
	}
	return cp.result(), nil
}

// bind moves addrs (one function, or a group's) to vfio-pci; those on it
// already are given the owner only.
func (d *Driver) bind(addrs []string, owner *pci.Owner) ([]pci.Bound, error) {
	var out []pci.Bound
	for _, a := range addrs {
		dev, err := d.host.Get(a)
		if err != nil {
			return out, err
		}
		if dev.Driver == pci.VFIODriver {
			if owner != nil {
				if err := d.host.SetOwner(a, *owner); err != nil {
					return out, err
				}
			}
			continue
		}
		b, err := d.host.Bind(a, pci.BindOptions{Group: len(addrs) > 1, Owner: owner})
		out = append(out, b...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// undo gives back what a failed prepare bound.
func (d *Driver) undo(cp *prepared) {
	for i := len(cp.Bound) - 1; i >= 0; i-- {
		if _, err := d.host.Restore(cp.Bound[i].Address); err != nil {
			d.log.Error("undo a failed prepare", "address", cp.Bound[i].Address, "err", err)
		}
	}
}

// verify: a checkpoint is trusted only while its devices are still there
// and on vfio-pci.
func (d *Driver) verify(cp *prepared) error {
	for _, dev := range cp.Devices {
		for _, a := range dev.Addresses {
			now, err := d.host.Get(a)
			switch {
			case errors.Is(err, pci.ErrNoDevice):
				return fmt.Errorf("device %s (%s) is gone", dev.Device, a)
			case err != nil:
				return err
			case now.Driver != pci.VFIODriver:
				return fmt.Errorf("device %s (%s) is on %s now, not vfio-pci", dev.Device, a, orNone(now.Driver))
			}
		}
	}
	return nil
}

// notPreparedElsewhere: no other prepared claim holds any of addrs, the
// driver's last line of defence against handing a device out twice.
func (d *Driver) notPreparedElsewhere(uid string, addrs []string) error {
	all, err := records.List(d.opts.StateDir, checkClaim)
	if err != nil {
		return err
	}
	for _, other := range all {
		if other.UID == uid {
			continue
		}
		for _, dev := range other.Devices {
			for _, a := range dev.Addresses {
				if slices.Contains(addrs, a) {
					return fmt.Errorf("%s is prepared for claim %s/%s (%s)", a, other.Namespace, other.Name, other.UID)
				}
			}
		}
	}
	return nil
}

func (cp *prepared) result() []kubeletplugin.Device {
	var out []kubeletplugin.Device
	for _, dev := range cp.Devices {
		out = append(out, kubeletplugin.Device{Requests: dev.Requests, PoolName: dev.Pool, DeviceName: dev.Device, CDIDeviceIDs: dev.CDI})
	}
	return out
}

// UnprepareResourceClaims gives each claim's devices back to the drivers
// they had and removes its spec (kubeletplugin.DRAPlugin). A claim with no
// checkpoint is not prepared here: nothing to do.
func (d *Driver) UnprepareResourceClaims(ctx context.Context, claims []kubeletplugin.NamespacedObject) (map[types.UID]error, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[types.UID]error{}
	for _, c := range claims {
		err := d.unprepare(string(c.UID))
		if err != nil {
			d.log.Error("unprepare", "claim", c.Namespace+"/"+c.Name, "uid", c.UID, "err", err)
		}
		out[c.UID] = err
	}
	return out, nil
}

func (d *Driver) unprepare(uid string) error {
	cp, err := d.loadCheckpoint(uid)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("claim %s: its checkpoint: %w", uid, err)
	}
	who := fmt.Sprintf("claim %s/%s", cp.Namespace, cp.Name)
	var errs []string
	for i := len(cp.Bound) - 1; i >= 0; i-- {
		b := cp.Bound[i]
		now, err := d.host.Get(b.Address)
		switch {
		case errors.Is(err, pci.ErrNoDevice):
			d.log.Warn("unprepare: device gone", "claim", who, "address", b.Address)
			continue
		case err != nil:
			errs = append(errs, err.Error())
			continue
		case now.Driver == b.Previous:
			continue // given back by an earlier, partly failed, unprepare
		case now.Driver != pci.VFIODriver:
			d.log.Warn("unprepare: device rebound by someone else, left as it is", "claim", who, "address", b.Address, "driver", now.Driver)
			continue
		}
		if _, err := d.host.Restore(b.Address); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s: %s", who, strings.Join(errs, "; ")) // the checkpoint stays: the kubelet retries
	}
	if err := d.host.RemoveSpec(cp.Kind, d.opts.CDIDir); err != nil {
		return fmt.Errorf("%s: CDI spec: %w", who, err)
	}
	return d.dropCheckpoint(uid)
}

// HandleError logs background errors (publishing slices); a fatal one
// ends the plugin through cancel.
func (d *Driver) HandleError(ctx context.Context, err error, msg string) {
	recoverable := errors.Is(err, kubeletplugin.ErrRecoverable)
	d.log.Error(msg, "err", err, "recoverable", recoverable)
	if !recoverable && d.fatal != nil {
		d.fatal(fmt.Errorf("%s: %w", msg, err))
	}
}

// WatchHealthStatus: health goes into the ResourceSlices (a device that
// leaves, or whose group stops being viable, changes them).
func (d *Driver) WatchHealthStatus(ctx context.Context, reports chan<- kubeletplugin.DeviceHealthReport) error {
	return kubeletplugin.ErrHealthNotSupported
}
