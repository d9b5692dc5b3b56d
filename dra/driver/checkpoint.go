package driver

import (
	"fmt"

	"github.com/vfioctl/vfioctl/internal/records"
	"github.com/vfioctl/vfioctl/pci"
)

// prepared is the checkpoint of one prepared claim: enough to answer a
// repeated prepare and to undo it from another process.
type prepared struct {
	UID       string        `json:"uid"`
	Namespace string        `json:"namespace"`
	Name      string        `json:"name"`
	Kind      string        `json:"cdi_kind"`
	Backend   string        `json:"backend"`
	Devices   []preparedDev `json:"devices"`
	Bound     []pci.Bound   `json:"bound"` // what prepare bound, with the driver each had
	Owner     *pci.Owner    `json:"owner,omitempty"`
}

type preparedDev struct {
	Requests  []string `json:"requests"`
	Pool      string   `json:"pool"`
	Device    string   `json:"device"`
	Addresses []string `json:"addresses"`
	CDI       []string `json:"cdi_devices"`
}

func checkClaim(name string, p prepared) error {
	if p.UID != name {
		return fmt.Errorf("is the checkpoint of claim %q", p.UID)
	}
	return nil
}

func (d *Driver) loadCheckpoint(uid string) (*prepared, error) {
	p, err := records.Read(records.Path(d.opts.StateDir, uid), checkClaim)
	if err != nil {
		return nil, err
	}
	return &p, nil
}

func (d *Driver) saveCheckpoint(p *prepared) error {
	return records.Write(d.opts.StateDir, p.UID, p)
}

func (d *Driver) dropCheckpoint(uid string) error {
	err := records.Delete(d.opts.StateDir, uid)
	if err == records.ErrNone {
		return nil
	}
	return err
}
