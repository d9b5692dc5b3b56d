package nvme

import (
	"errors"
	"fmt"
)

// Command is a 64-byte submission queue entry. The driver fills CID and
// the data pointers (PRP1, PRP2); the rest is the caller's.
type Command struct {
	Opcode uint8
	Flags  uint8
	CID    uint16
	NSID   uint32
	_      [2]uint32
	MPTR   uint64
	PRP1   uint64
	PRP2   uint64
	CDW10  uint32
	CDW11  uint32
	CDW12  uint32
	CDW13  uint32
	CDW14  uint32
	CDW15  uint32
}

// completion is a 16-byte completion queue entry.
type completion struct {
	DW0    uint32
	DW1    uint32
	SQHead uint16
	SQID   uint16
	CID    uint16
	Status uint16 // bit 0: phase tag; bits 15:1 the status field
}

// Admin command opcodes.
const (
	adminDeleteSQ    = 0x00
	adminCreateSQ    = 0x01
	adminDeleteCQ    = 0x04
	adminCreateCQ    = 0x05
	adminIdentify    = 0x06
	adminAbort       = 0x08
	adminSetFeatures = 0x09

	featureNumQueues = 0x07
)

// NVM command set opcodes.
const (
	OpFlush = 0x00
	OpWrite = 0x01
	OpRead  = 0x02
)

// Status is a command's completion status: status code type and code.
// Zero is success.
type Status uint16

// SCT is the status code type; SC the status code.
func (s Status) SCT() uint8 { return uint8(s >> 8 & 7) }
func (s Status) SC() uint8  { return uint8(s) }

// DNR reports the controller's "do not retry".
func (s Status) DNR() bool { return s&(1<<14) != 0 }

func statusOf(field uint16) Status {
	f := field >> 1 // SC 7:0, SCT 10:8, CRD 12:11, M 13, DNR 14
	return Status(f)
}

var genericStatus = map[uint8]string{
	0x01: "invalid command opcode",
	0x02: "invalid field in command",
	0x03: "command ID conflict",
	0x04: "data transfer error",
	0x06: "internal error",
	0x07: "command abort requested",
	0x0b: "invalid namespace or format",
	0x0f: "invalid SGL/PRP offset",
	0x13: "invalid PRP offset",
	0x80: "LBA out of range",
	0x81: "capacity exceeded",
	0x82: "namespace not ready",
}

var commandSpecificStatus = map[uint8]string{
	0x00: "completion queue invalid",
	0x01: "invalid queue identifier",
	0x02: "invalid queue size",
	0x06: "invalid firmware slot",
	0x08: "invalid interrupt vector",
	0x0b: "invalid namespace format",
}

func (s Status) String() string {
	var name string
	switch s.SCT() {
	case 0:
		name = genericStatus[s.SC()]
	case 1:
		name = commandSpecificStatus[s.SC()]
	case 2:
		name = "media or data integrity error"
	}
	if name == "" {
		name = "status"
	}
	return fmt.Sprintf("%s (SCT %#x SC %#x)", name, s.SCT(), s.SC())
}

var (
	// ErrTimeout: a command did not complete within Options.Timeout. It
	// was aborted; the controller may need Reset (the error says).
	ErrTimeout = errors.New("nvme: command timed out")
	// ErrFatal: the controller reports a fatal status (CSTS.CFS); every
	// command fails until Reset.
	ErrFatal = errors.New("nvme: controller fatal status (CSTS.CFS)")
	// ErrNoBuffers: the DMA pool has no room for the request.
	ErrNoBuffers = errors.New("nvme: DMA pool exhausted")
)

// CommandError is a command the controller completed with a non-zero
// status, or that failed before it could (then Status is 0 and Err says
// why: ErrTimeout, ErrFatal).
type CommandError struct {
	Op     string // e.g. "read nsid 1 lba 100 blocks 8"
	Queue  int
	Status Status
	Err    error
}

func (e *CommandError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("nvme: %s on queue %d: %v", e.Op, e.Queue, e.Err)
	}
	return fmt.Sprintf("nvme: %s on queue %d: %s", e.Op, e.Queue, e.Status)
}

func (e *CommandError) Unwrap() error { return e.Err }
