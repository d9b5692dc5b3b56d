package nvme

import "time"

// Controller registers (NVMe 1.4, section 3.1).
const (
	regCAP  = 0x00
	regVS   = 0x08
	regCC   = 0x14
	regCSTS = 0x1c
	regAQA  = 0x24
	regASQ  = 0x28
	regACQ  = 0x30
	regDBS  = 0x1000 // first doorbell
)

// CC and CSTS bits.
const (
	ccEnable  = 1 << 0
	ccCSSNVM  = 0 << 4
	ccMPS4K   = 0 << 7
	ccAMSRR   = 0 << 11
	ccSHNNorm = 1 << 14
	ccIOSQES  = 6 << 16 // 64-byte submission entries
	ccIOCQES  = 4 << 20 // 16-byte completion entries

	cstsRDY      = 1 << 0
	cstsCFS      = 1 << 1
	cstsSHSTMask = 3 << 2
	cstsSHSTDone = 2 << 2
)

// pageSize is the memory page size the driver programs (CC.MPS = 0).
const pageSize = 4096

// capRegs is CAP decoded.
type capRegs struct {
	mqes    int           // maximum entries per queue
	timeout time.Duration // CAP.TO: worst case for CSTS.RDY to change
	dstrd   uint          // doorbell stride: 4 << dstrd bytes
	mpsMin  int           // smallest memory page size, bytes
	css     uint8         // command sets supported
}

func decodeCAP(v uint64) capRegs {
	return capRegs{
		mqes:    int(v&0xffff) + 1,
		timeout: time.Duration(v>>24&0xff) * 500 * time.Millisecond,
		dstrd:   uint(v >> 32 & 0xf),
		mpsMin:  4096 << (v >> 48 & 0xf),
		css:     uint8(v >> 37),
	}
}

// sqDoorbell and cqDoorbell are the offsets of queue qid's doorbells.
func (c capRegs) sqDoorbell(qid int) uintptr { return regDBS + uintptr(2*qid)*(4<<c.dstrd) }
func (c capRegs) cqDoorbell(qid int) uintptr { return regDBS + uintptr(2*qid+1)*(4<<c.dstrd) }
