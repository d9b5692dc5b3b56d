package driver

import (
	"bytes"
	"encoding/json"
	"fmt"

	resourceapi "k8s.io/api/resource/v1"

	"github.com/vfioctl/vfioctl/cdi"
	"github.com/vfioctl/vfioctl/pci"
)

// ConfigKind and ConfigAPIVersion name the driver's opaque configuration,
// given in a DeviceClass or a ResourceClaim:
//
//	config:
//	- opaque:
//	    driver: vfio.vfioctl.dev
//	    parameters:
//	      apiVersion: vfio.vfioctl.dev/v1
//	      kind: Config
//	      backend: prefer-iommufd   # legacy, prefer-iommufd or require-iommufd
//	      owner: "107:107"          # the VFIO nodes' owner, for an unprivileged VMM
const (
	ConfigKind       = "Config"
	ConfigAPIVersion = "vfio.vfioctl.dev/v1"
)

// Config is how a claim's devices are handed out: one backend for the
// whole claim and, optionally, an owner for their nodes.
type Config struct {
	Policy cdi.Policy
	Owner  *pci.Owner
}

type configJSON struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Backend    string `json:"backend,omitempty"`
	Owner      string `json:"owner,omitempty"`
}

// claimConfig merges the opaque configurations for driver in the
// allocation: the DeviceClass's first, then the claim's, a later field
// replacing an earlier one. A configuration that does not parse is an
// error naming where it came from.
func claimConfig(driver string, def Config, alloc *resourceapi.AllocationResult) (Config, error) {
	c := def
	for _, src := range []resourceapi.AllocationConfigSource{resourceapi.AllocationConfigSourceClass, resourceapi.AllocationConfigSourceClaim} {
		for _, dc := range alloc.Devices.Config {
			if dc.Source != src || dc.Opaque == nil || dc.Opaque.Driver != driver {
				continue
			}
			if err := c.apply(dc.Opaque.Parameters.Raw); err != nil {
				return c, fmt.Errorf("the %s's configuration for %s: %w", map[resourceapi.AllocationConfigSource]string{
					resourceapi.AllocationConfigSourceClass: "DeviceClass", resourceapi.AllocationConfigSourceClaim: "ResourceClaim"}[src], driver, err)
			}
		}
	}
	return c, nil
}

func (c *Config) apply(raw []byte) error {
	var j configJSON
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return fmt.Errorf("%w (fields: apiVersion, kind, backend, owner)", err)
	}
	if j.APIVersion != ConfigAPIVersion || j.Kind != ConfigKind {
		return fmt.Errorf("apiVersion %q kind %q, want %s %s", j.APIVersion, j.Kind, ConfigAPIVersion, ConfigKind)
	}
	if j.Backend != "" {
		p, err := cdi.ParsePolicy(j.Backend)
		if err != nil {
			return err
		}
		c.Policy = p
	}
	if j.Owner != "" {
		o, err := pci.ParseOwner(j.Owner)
		if err != nil {
			return err
		}
		c.Owner = &o
	}
	return nil
}
