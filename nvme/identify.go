package nvme

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"strings"
)

// IdentifyController is the part of Identify Controller (CNS 01h) the
// driver and its users need.
type IdentifyController struct {
	VendorID     uint16 `json:"vendor_id"`
	Serial       string `json:"serial"`
	Model        string `json:"model"`
	Firmware     string `json:"firmware"`
	MDTS         uint8  `json:"mdts"` // max transfer: 2^MDTS minimum pages (0: no limit)
	ControllerID uint16 `json:"controller_id"`
	Version      uint32 `json:"version"`
	Namespaces   uint32 `json:"namespaces"` // NN: the highest namespace id
	OACS         uint16 `json:"oacs"`       // optional admin commands
	ONCS         uint16 `json:"oncs"`       // optional NVM commands
	VWC          bool   `json:"volatile_write_cache"`
}

// NamespaceInfo is Identify Namespace (CNS 00h) decoded.
type NamespaceInfo struct {
	ID        uint32 `json:"nsid"`
	Blocks    uint64 `json:"blocks"`     // NSZE
	Capacity  uint64 `json:"capacity"`   // NCAP, blocks
	Used      uint64 `json:"used"`       // NUSE, blocks
	BlockSize int    `json:"block_size"` // bytes of the format in use
	Metadata  int    `json:"metadata"`   // bytes of metadata per block
}

// Bytes is the namespace's size in bytes, or the largest uint64 for a
// namespace larger than that (no byte offset then lies past its end).
func (n *NamespaceInfo) Bytes() uint64 {
	hi, lo := bits.Mul64(n.Blocks, uint64(n.BlockSize))
	if hi != 0 {
		return math.MaxUint64
	}
	return lo
}

func text(b []byte) string { return strings.TrimSpace(string(b)) }

// identify runs Identify with cns into a pooled page and decodes it.
func (c *Controller) identify(what string, cns, nsid uint32, decode func([]byte) error) error {
	buf, err := c.pool.get(pageSize)
	if err != nil {
		return err
	}
	defer c.pool.put(buf)
	if _, err := c.admin.exec(what, &Command{Opcode: adminIdentify, NSID: nsid, CDW10: cns}, buf.IOVA(), pageSize); err != nil {
		return err
	}
	return decode(buf.Bytes())
}

func (c *Controller) identifyController() (*IdentifyController, error) {
	var id IdentifyController
	err := c.identify("identify controller", 1, 0, func(b []byte) error {
		le := binary.LittleEndian
		id = IdentifyController{
			VendorID: le.Uint16(b[0:]), Serial: text(b[4:24]), Model: text(b[24:64]), Firmware: text(b[64:72]),
			MDTS: b[77], ControllerID: le.Uint16(b[78:]), Version: le.Uint32(b[80:]),
			Namespaces: le.Uint32(b[516:]), OACS: le.Uint16(b[256:]), ONCS: le.Uint16(b[520:]), VWC: b[525]&1 != 0,
		}
		if b[512]&0xf > 6 || b[513]&0xf > 4 {
			return fmt.Errorf("nvme: %s needs SQ/CQ entries of 2^%d/2^%d bytes; the driver uses 64/16", c.dev.Name(), b[512]&0xf, b[513]&0xf)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &id, nil
}

// Namespace identifies namespace nsid. A namespace that does not exist or
// is not active is an error naming it (nothing is sent to it).
func (c *Controller) Namespace(nsid uint32) (*Namespace, error) {
	if nsid == 0 || nsid > c.ident.Namespaces {
		return nil, fmt.Errorf("%w: %s has namespaces 1 to %d, not %d", ErrBadRequest, c.dev.Name(), c.ident.Namespaces, nsid)
	}
	info := NamespaceInfo{ID: nsid}
	err := c.identify(fmt.Sprintf("identify namespace %d", nsid), 0, nsid, func(b []byte) error {
		le := binary.LittleEndian
		info.Blocks, info.Capacity, info.Used = le.Uint64(b[0:]), le.Uint64(b[8:]), le.Uint64(b[16:])
		f := b[26] & 0xf
		if int(f) > int(b[25]) {
			return fmt.Errorf("nvme: namespace %d: format %d of %d", nsid, f, b[25]+1)
		}
		lbaf := le.Uint32(b[128+4*int(f):])
		info.Metadata, info.BlockSize = int(lbaf&0xffff), 1<<(lbaf>>16&0xff)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if info.Blocks == 0 {
		return nil, fmt.Errorf("%w: %s: namespace %d is not active", ErrBadRequest, c.dev.Name(), nsid)
	}
	if info.BlockSize < 512 || info.BlockSize > pageSize {
		return nil, fmt.Errorf("nvme: namespace %d: %d-byte blocks are not supported", nsid, info.BlockSize)
	}
	return &Namespace{c: c, Info: info}, nil
}
