package vfio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/uapi"
)

// Migration is a device's side of VFIO migration v2: a state machine
// (MigState) moved with SetState, and the data fds the states that carry
// device state hand out. A VMM saves a device with Save (or streams it
// with Transfer) and restores one with Load; a state move the kernel
// refuses names its arc and where the device ended up.
type Migration struct {
	d     *Device
	flags MigrationFlags
}

// noMigration is why a device's ENOTTY to VFIO_DEVICE_FEATURE_MIGRATION.
const noMigration = "the device's driver implements no migration (in Linux: the vfio-pci variant drivers mlx5, hisi_acc, pds, virtio and nvgrace-gpu, and the mtty sample from 6.7)"

// Migration is VFIO_DEVICE_FEATURE(GET, MIGRATION): the device's
// migration, or vfioerr.ErrNotSupported when its driver has none.
func (d *Device) Migration() (*Migration, error) {
	b, err := d.feature(deviceFeature{flags: uapi.VFIO_DEVICE_FEATURE_GET | uapi.VFIO_DEVICE_FEATURE_MIGRATION,
		payload: make([]byte, 8), absent: noMigration})
	if err != nil {
		return nil, err
	}
	return &Migration{d: d, flags: MigrationFlags(binary.NativeEndian.Uint64(b))}, nil
}

// Flags is what the device offers: STOP_COPY, and P2P and PRE_COPY when
// set.
func (m *Migration) Flags() MigrationFlags { return m.flags }

// State is VFIO_DEVICE_FEATURE(GET, MIG_DEVICE_STATE).
func (m *Migration) State() (MigState, error) {
	b, err := m.d.feature(deviceFeature{flags: uapi.VFIO_DEVICE_FEATURE_GET | uapi.VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
		payload: make([]byte, 8), absent: noMigration})
	if err != nil {
		return 0, err
	}
	return MigState(binary.NativeEndian.Uint32(b)), nil
}

// SetState is VFIO_DEVICE_FEATURE(SET, MIG_DEVICE_STATE): one request,
// which the kernel carries out along MigrationPath (RUNNING to RESUMING
// passes through STOP). Moves into STOP_COPY, PRE_COPY, PRE_COPY_P2P and
// RESUMING return the data fd (nil for a move that continues the one
// already open, such as PRE_COPY to STOP_COPY); the caller closes it.
// A refused move fails wrapping the kernel's errno, naming the arc, why
// the kernel's table allows no such walk (when it does not), and the state
// the device is in after the failure: in ERROR, only Device.Reset leads
// out (back to RUNNING).
func (m *Migration) SetState(to MigState) (*MigrationData, error) {
	from, err := m.State()
	if err != nil {
		return nil, err
	}
	payload := make([]byte, 8)
	binary.NativeEndian.PutUint32(payload, uint32(to))
	binary.NativeEndian.PutUint32(payload[4:], ^uint32(0)) // data_fd -1
	hint := func() string {
		why := ""
		if _, err := MigrationPath(from, to, m.flags); err != nil {
			why = err.Error() + "; "
		}
		now, err := m.State()
		if err != nil {
			return why + "the device's state after it cannot be read: " + err.Error()
		}
		why += "the device is now in " + now.String()
		if now == MigError {
			why += ": reset it (VFIO_DEVICE_RESET) to bring it back to RUNNING"
		}
		return why
	}
	b, err := m.d.feature(deviceFeature{flags: uapi.VFIO_DEVICE_FEATURE_SET | uapi.VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
		payload: payload, args: from.String() + " -> " + to.String(), absent: noMigration,
		hints: kernel.Hints{unix.EINVAL: hint, unix.EFAULT: hint, unix.ENOMEM: hint, unix.EIO: hint, unix.EBUSY: hint}})
	if err != nil {
		return nil, err
	}
	fd := int32(binary.NativeEndian.Uint32(b[4:]))
	if fd < 0 {
		return nil, nil
	}
	return &MigrationData{f: os.NewFile(uintptr(fd), fmt.Sprintf("%s migration data (%s)", m.d.Name(), to)), state: to}, nil
}

// StopCopySize is VFIO_DEVICE_FEATURE(GET, MIG_DATA_SIZE) (Linux 6.3):
// the driver's estimate of the bytes STOP_COPY will give.
func (m *Migration) StopCopySize() (uint64, error) {
	b, err := m.d.feature(deviceFeature{flags: uapi.VFIO_DEVICE_FEATURE_GET | uapi.VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
		payload: make([]byte, 8), absent: "the kernel or the device's driver does not estimate the stop-copy size", since: "6.3"})
	if err != nil {
		return 0, err
	}
	return binary.NativeEndian.Uint64(b), nil
}

// Save writes the device's state to w: the device moves to STOP_COPY
// (from RUNNING the kernel passes through STOP: it stops), its data fd is
// read to the end, and the device is left in STOP. It returns the bytes
// written.
func (m *Migration) Save(w io.Writer) (int64, error) {
	data, err := m.SetState(MigStopCopy)
	if err != nil {
		return 0, err
	}
	if data == nil {
		return 0, fmt.Errorf("vfio: %s: STOP_COPY gave no data fd (was the device already in PRE_COPY?)", m.d.Name())
	}
	defer data.Close()
	n, err := io.Copy(w, data)
	if err != nil {
		return n, fmt.Errorf("vfio: saving %s: %w", m.d.Name(), err)
	}
	if _, err := m.SetState(MigStop); err != nil {
		return n, err
	}
	return n, data.Close()
}

// Load restores the device's state from r, a stream Save (or another
// device's STOP_COPY) gave: the device moves to RESUMING (it stops first),
// takes r to its end, and is left in STOP, which is where the driver
// checks and applies what it read: a stream it rejects fails that move.
// SetState(MigRunning) then runs the device with its new state.
func (m *Migration) Load(r io.Reader) (int64, error) {
	data, err := m.SetState(MigResuming)
	if err != nil {
		return 0, err
	}
	if data == nil {
		return 0, fmt.Errorf("vfio: %s: RESUMING gave no data fd", m.d.Name())
	}
	defer data.Close()
	n, err := io.Copy(data, r)
	if err != nil {
		return n, fmt.Errorf("vfio: loading %s after %d bytes: %w", m.d.Name(), n, err)
	}
	if _, err := m.SetState(MigStop); err != nil {
		return n, err
	}
	return n, data.Close()
}

// TransferStats counts what Transfer moved in each phase.
type TransferStats struct {
	PreCopy  int64 `json:"precopy_bytes"`  // while the source still ran (PRE_COPY)
	StopCopy int64 `json:"stopcopy_bytes"` // after it stopped (STOP_COPY)
}

// Transfer moves src's state into dst as a live migration within one host
// does: dst goes to RESUMING; when src offers PRE_COPY its initial data
// goes while it still runs, then src stops (STOP_COPY) and the rest
// follows; dst checks and applies it (STOP) and runs (RUNNING), and src is
// left in STOP. If a step fails, src is returned to RUNNING (the recovery
// QEMU's vfio_migration_set_state takes) and the error says which step.
func Transfer(src, dst *Migration) (st TransferStats, err error) {
	sink, err := dst.SetState(MigResuming)
	if err != nil {
		return st, err
	}
	if sink == nil {
		return st, fmt.Errorf("vfio: %s: RESUMING gave no data fd", dst.d.Name())
	}
	defer sink.Close()
	defer func() {
		if err != nil {
			if _, rerr := src.SetState(MigRunning); rerr != nil {
				err = fmt.Errorf("%w; and returning the source to RUNNING failed: %v", err, rerr)
			}
		}
	}()
	var data *MigrationData
	if src.flags&MigrationPreCopy != 0 {
		if data, err = src.SetState(MigPreCopy); err != nil {
			return st, err
		}
		if data == nil {
			return st, fmt.Errorf("vfio: %s: PRE_COPY gave no data fd", src.d.Name())
		}
		defer data.Close()
		if st.PreCopy, err = io.Copy(sink, data); err != nil {
			return st, fmt.Errorf("vfio: pre-copy from %s to %s: %w", src.d.Name(), dst.d.Name(), err)
		}
	}
	next, err := src.SetState(MigStopCopy)
	if err != nil {
		return st, err
	}
	if next != nil {
		defer next.Close()
		data = next
	}
	if data == nil {
		return st, fmt.Errorf("vfio: %s: STOP_COPY gave no data fd", src.d.Name())
	}
	if st.StopCopy, err = io.Copy(sink, data); err != nil {
		return st, fmt.Errorf("vfio: stop-copy from %s to %s: %w", src.d.Name(), dst.d.Name(), err)
	}
	if _, err = dst.SetState(MigStop); err != nil {
		return st, err
	}
	if _, err = dst.SetState(MigRunning); err != nil {
		return st, err
	}
	_, err = src.SetState(MigStop)
	return st, err
}

// MigrationData is a migration data fd: read in STOP_COPY and PRE_COPY
// (the saving side), written in RESUMING. It reads with read(2), never at
// an offset, as the protocol requires.
type MigrationData struct {
	f     *os.File
	state MigState
}

// State is the state whose move gave this fd.
func (m *MigrationData) State() MigState { return m.state }

// Read reads device state. io.EOF ends it: for good in STOP_COPY; in
// PRE_COPY only for now (the kernel's 0 or ENOMSG: no data until the
// device changes its state again, see PrecopyInfo).
func (m *MigrationData) Read(p []byte) (int, error) {
	n, err := m.f.Read(p)
	if errors.Is(err, unix.ENOMSG) {
		return n, io.EOF
	}
	return n, err
}

// Write gives the resuming device the next part of the stream.
func (m *MigrationData) Write(p []byte) (int, error) { return m.f.Write(p) }

// PrecopyInfo is VFIO_MIG_GET_PRECOPY_INFO (Linux 6.2), valid in the
// PRE_COPY states: the initial bytes not yet read, and the bytes the
// device has dirtied since.
type PrecopyInfo struct {
	InitialBytes uint64 `json:"initial_bytes"`
	DirtyBytes   uint64 `json:"dirty_bytes"`
}

// PrecopyInfo asks the driver how much pre-copy data is left.
func (m *MigrationData) PrecopyInfo() (PrecopyInfo, error) {
	var info uapi.VfioPrecopyInfo
	rc, err := m.f.SyscallConn()
	if err != nil {
		return PrecopyInfo{}, err
	}
	var ioctlErr error
	if err := rc.Control(func(fd uintptr) { ioctlErr = uapi.IoctlVfioMigGetPrecopyInfo(int(fd), &info) }); err != nil {
		return PrecopyInfo{}, err
	}
	if ioctlErr != nil {
		return PrecopyInfo{}, kernel.Call{Op: "VFIO_MIG_GET_PRECOPY_INFO", Object: m.f.Name(), Since: "6.2",
			Hints: kernel.Hints{unix.EINVAL: kernel.Say("valid only while the device is in PRE_COPY or PRE_COPY_P2P")}}.Fail(ioctlErr)
	}
	return PrecopyInfo{InitialBytes: info.InitialBytes, DirtyBytes: info.DirtyBytes}, nil
}

// Close closes the data fd. A second Close fails with os.ErrClosed.
func (m *MigrationData) Close() error { return m.f.Close() }
