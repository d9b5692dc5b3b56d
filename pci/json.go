package pci

import (
	"encoding/json"
	"fmt"
)

// MarshalJSON writes the IDs and the class as hex strings, as lspci -n
// writes them: "vendor": "8086", "device": "10d3", "class": "0200" (base
// class and subclass) with "prog_if": "00".
func (d *Device) MarshalJSON() ([]byte, error) {
	type plain Device // the same fields, without this method
	return json.Marshal(struct {
		*plain
		Vendor    string `json:"vendor"`
		Device    string `json:"device"`
		SubVendor string `json:"subsystem_vendor"`
		SubDevice string `json:"subsystem_device"`
		Class     string `json:"class"`
		ProgIf    string `json:"prog_if"`
	}{
		plain:     (*plain)(d),
		Vendor:    fmt.Sprintf("%04x", d.Vendor),
		Device:    fmt.Sprintf("%04x", d.Device),
		SubVendor: fmt.Sprintf("%04x", d.SubVendor),
		SubDevice: fmt.Sprintf("%04x", d.SubDevice),
		Class:     fmt.Sprintf("%04x", d.Class>>8),
		ProgIf:    fmt.Sprintf("%02x", d.Class&0xff),
	})
}
