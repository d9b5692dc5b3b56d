package vfio

import (
	"fmt"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/uapi"
)

// EEH (Enhanced Error Handling) is how POWER isolates a device that
// misbehaved: its partitionable endpoint (PE) is frozen, and the user of a
// SPAPR container thaws, resets and reconfigures it with VFIO_EEH_PE_OP.
// CheckExtension(uapi.VFIO_EEH) says whether the platform offers it.

// EEHOp is a VFIO_EEH_PE_OP operation.
type EEHOp uint32

const (
	EEHDisable          EEHOp = uapi.VFIO_EEH_PE_DISABLE
	EEHEnable           EEHOp = uapi.VFIO_EEH_PE_ENABLE
	EEHUnfreezeIO       EEHOp = uapi.VFIO_EEH_PE_UNFREEZE_IO
	EEHUnfreezeDMA      EEHOp = uapi.VFIO_EEH_PE_UNFREEZE_DMA
	EEHGetState         EEHOp = uapi.VFIO_EEH_PE_GET_STATE
	EEHResetDeactivate  EEHOp = uapi.VFIO_EEH_PE_RESET_DEACTIVATE
	EEHResetHot         EEHOp = uapi.VFIO_EEH_PE_RESET_HOT
	EEHResetFundamental EEHOp = uapi.VFIO_EEH_PE_RESET_FUNDAMENTAL
	EEHConfigure        EEHOp = uapi.VFIO_EEH_PE_CONFIGURE
)

var eehOpNames = map[EEHOp]string{EEHDisable: "disable", EEHEnable: "enable", EEHUnfreezeIO: "unfreeze-io",
	EEHUnfreezeDMA: "unfreeze-dma", EEHGetState: "get-state", EEHResetDeactivate: "reset-deactivate",
	EEHResetHot: "reset-hot", EEHResetFundamental: "reset-fundamental", EEHConfigure: "configure"}

func (o EEHOp) String() string {
	if n, ok := eehOpNames[o]; ok {
		return n
	}
	return fmt.Sprintf("EEHOp(%d)", uint32(o))
}

// EEHState is what EEHGetState reports of a PE.
type EEHState int

const (
	EEHStateNormal      EEHState = uapi.VFIO_EEH_PE_STATE_NORMAL
	EEHStateReset       EEHState = uapi.VFIO_EEH_PE_STATE_RESET
	EEHStateStopped     EEHState = uapi.VFIO_EEH_PE_STATE_STOPPED
	EEHStateStoppedDMA  EEHState = uapi.VFIO_EEH_PE_STATE_STOPPED_DMA
	EEHStateUnavailable EEHState = uapi.VFIO_EEH_PE_STATE_UNAVAIL
)

func (s EEHState) String() string {
	switch s {
	case EEHStateNormal:
		return "normal"
	case EEHStateReset:
		return "reset"
	case EEHStateStopped:
		return "stopped"
	case EEHStateStoppedDMA:
		return "stopped-dma"
	case EEHStateUnavailable:
		return "unavailable"
	}
	return fmt.Sprintf("EEHState(%d)", int(s))
}

// EEH is VFIO_EEH_PE_OP on the PEs of every group in the container. The
// kernel's answer is returned as an EEHState; it is meaningful for
// EEHGetState.
func (s *SPAPR) EEH(op EEHOp) (EEHState, error) {
	arg := uapi.VfioEehPeOp{Op: uint32(op)} // the helper sets argsz
	return s.eehOp(op.String(), &arg)
}

// EEHError is an error to inject (VFIO_EEH_PE_INJECT_ERR): the RTAS
// ibm,errinjct type and function, and the address and mask it targets.
type EEHError struct {
	Type, Func uint32
	Addr, Mask uint64
}

// EEHInjectError injects e into the container's PEs.
func (s *SPAPR) EEHInjectError(e EEHError) error {
	arg := uapi.VfioEehPeOp{Op: uapi.VFIO_EEH_PE_INJECT_ERR,
		Err: uapi.VfioEehPeErr{Type: e.Type, Func: e.Func, Addr: e.Addr, Mask: e.Mask}}
	_, err := s.eehOp(fmt.Sprintf("inject-error type=%d func=%d addr=%#x mask=%#x", e.Type, e.Func, e.Addr, e.Mask), &arg)
	return err
}

func (s *SPAPR) eehOp(args string, arg *uapi.VfioEehPeOp) (EEHState, error) {
	var r int
	err := s.call(kernel.Call{Op: "VFIO_EEH_PE_OP", Args: args}, func(fd int) (err error) {
		r, err = uapi.IoctlVfioEehPeOp(fd, arg)
		return err
	})
	return EEHState(r), err
}
