package vfio

import (
	"encoding/binary"
	"fmt"
)

// PCI configuration space offsets and bits used by the helpers.
const (
	PCICommand          = 0x04
	PCIStatus           = 0x06
	PCICapabilityList   = 0x34
	PCICommandMemory    = 1 << 1
	PCICommandMaster    = 1 << 2
	PCICommandIntxOff   = 1 << 10
	pciStatusCapList    = 1 << 4
	PCICapIDMSI         = 0x05
	PCICapIDExpress     = 0x10
	PCICapIDMSIX        = 0x11
	PCICapIDPowerManage = 0x01
)

// Config is the PCI configuration space of a vfio-pci device, read and
// written through its config region (which the kernel virtualizes).
type Config struct {
	r *Region
}

// Config opens the device's PCI config region.
func (d *Device) Config() (*Config, error) {
	r, err := d.Region(ConfigRegion)
	if err != nil {
		return nil, err
	}
	return &Config{r: r}, nil
}

// Read8, Read16, Read32 read config space at off.
func (c *Config) Read8(off int64) (uint8, error) {
	var b [1]byte
	_, err := c.r.ReadAt(b[:], off)
	return b[0], err
}

func (c *Config) Read16(off int64) (uint16, error) {
	var b [2]byte
	_, err := c.r.ReadAt(b[:], off)
	return binary.LittleEndian.Uint16(b[:]), err
}

func (c *Config) Read32(off int64) (uint32, error) {
	var b [4]byte
	_, err := c.r.ReadAt(b[:], off)
	return binary.LittleEndian.Uint32(b[:]), err
}

// Write16 writes a 16-bit config register.
func (c *Config) Write16(off int64, v uint16) error {
	var b [2]byte
	binary.LittleEndian.PutUint16(b[:], v)
	_, err := c.r.WriteAt(b[:], off)
	return err
}

// Command reads the PCI command register.
func (c *Config) Command() (uint16, error) { return c.Read16(PCICommand) }

// EnableBusMaster sets memory decoding and bus mastering in the command
// register, which a device needs before it may DMA.
func (c *Config) EnableBusMaster() error {
	cmd, err := c.Command()
	if err != nil {
		return err
	}
	return c.Write16(PCICommand, cmd|PCICommandMaster|PCICommandMemory)
}

// Capability is one entry of the standard capability list.
type Capability struct {
	ID     uint8
	Offset uint8
}

// Capabilities walks the standard PCI capability list (bounded: at most 48
// entries, offsets inside the 256-byte header area, loops refused).
func (c *Config) Capabilities() ([]Capability, error) {
	st, err := c.Read16(PCIStatus)
	if err != nil {
		return nil, err
	}
	if st&pciStatusCapList == 0 {
		return nil, nil
	}
	ptr, err := c.Read8(PCICapabilityList)
	if err != nil {
		return nil, err
	}
	var out []Capability
	seen := map[uint8]bool{}
	for ptr &^= 3; ptr != 0; ptr &^= 3 {
		if ptr < 0x40 || seen[ptr] || len(out) == 48 {
			return out, fmt.Errorf("vfio: malformed PCI capability list at %#x", ptr)
		}
		seen[ptr] = true
		id, err := c.Read8(int64(ptr))
		if err != nil {
			return out, err
		}
		out = append(out, Capability{ID: id, Offset: ptr})
		if ptr, err = c.Read8(int64(ptr) + 1); err != nil {
			return out, err
		}
	}
	return out, nil
}
