package vfio

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/internal/sysfs"
	"github.com/vfioctl/vfioctl/uapi"
)

// VFToken is the shared secret between the user of an SR-IOV physical
// function on vfio-pci and the users of its virtual functions: the PF's
// user sets it (Device.SetVFToken), a VF's user presents it to open the VF
// (Options.VFToken). Without it a VF's user could disturb the PF's, which
// may be trusted with resources the VFs share.
type VFToken [16]byte

// RandomVFToken returns a random token.
func RandomVFToken() (VFToken, error) {
	var t VFToken
	_, err := rand.Read(t[:])
	t[6] = t[6]&0x0f | 0x40 // a version 4 UUID, as the kernel parses one
	t[8] = t[8]&0x3f | 0x80
	return t, err
}

// String is the token as a UUID, the form GET_DEVICE_FD takes.
func (t VFToken) String() string {
	h := hex.EncodeToString(t[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// ParseVFToken reads a UUID such as bd8d9d2b-5a5f-4f5a-a211-f591514ba1f3.
func ParseVFToken(s string) (VFToken, error) {
	var t VFToken
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != 16 || len(s) != 36 {
		return t, fmt.Errorf("vfio: VF token %q is not a UUID", s)
	}
	copy(t[:], b)
	return t, nil
}

// SetVFToken is VFIO_DEVICE_FEATURE(SET, PCI_VF_TOKEN) on an SR-IOV
// physical function bound to vfio-pci (with vfio_pci.enable_sriov=1): from
// now on its VFs open only with this token.
func (d *Device) SetVFToken(t VFToken) error {
	_, err := d.feature(deviceFeature{flags: uapi.VFIO_DEVICE_FEATURE_SET | uapi.VFIO_DEVICE_FEATURE_PCI_VF_TOKEN,
		payload: t[:], hints: vfTokenHints})
	return err
}

// vfTokenHints explain a refused SetVFToken.
var vfTokenHints = kernel.Hints{
	unix.ENOTTY: noVFToken,
	unix.EINVAL: noVFToken,
}

var noVFToken = kernel.Say("the device has no VF token: it must be an SR-IOV physical function on vfio-pci, loaded with vfio_pci.enable_sriov=1")

// DeviceWithVFToken is Group.Device for a virtual function whose physical
// function is on vfio-pci: GET_DEVICE_FD with "NAME vf_token=UUID".
func (g *Group) DeviceWithVFToken(name string, t VFToken) (*Device, error) {
	return g.device(name, name+" vf_token="+t.String())
}

// vfTokenHint explains EACCES from GET_DEVICE_FD for a virtual function.
func vfTokenHint(name string, given bool) string {
	pf := sysfs.PhysFn(name)
	switch {
	case pf == "":
		return ""
	case given:
		return "the VF token given does not match the one the user of its physical function " + pf + " set"
	}
	return "its physical function " + pf + " is on vfio-pci, so opening the VF needs the VF token its user set (Options.VFToken)"
}
