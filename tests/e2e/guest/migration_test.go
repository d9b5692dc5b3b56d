package guest

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/hack/qemu"
	"github.com/vfioctl/vfioctl/mdev"
	"github.com/vfioctl/vfioctl/vfio"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// mtty's 16550 registers beyond those TestMdev uses.
const (
	uartDLM = 1 // IER, or the divisor's high byte with DLAB
	uartLCR = 3
	uartMCR = 4
	uartSCR = 7
	lcrDLAB = 0x80
)

// mdevModes are the backends a mediated device opens through.
var mdevModes = []struct {
	name    string
	backend vfio.Backend
}{
	{"vfio_type1v2_iommu", vfio.Legacy},
	{"iommufd_compat", vfio.IOMMUFDCompat},
	{"group_iommufd", vfio.GroupIOMMUFD},
	{"iommufd", vfio.Cdev},
}

// needMdev skips unless the boot's kernel carries the sample parent
// (qemu.MdevEnv, from its configuration); a listed parent that is missing
// fails.
func needMdev(t *testing.T, parent string) {
	t.Helper()
	if !slices.Contains(strings.Split(os.Getenv(qemu.MdevEnv), ","), parent) {
		t.Skipf("this boot's kernel has no %s sample (%s=%q)", parent, qemu.MdevEnv, os.Getenv(qemu.MdevEnv))
	}
	ps, err := mdev.Parents()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.Name == parent {
			return
		}
	}
	t.Fatalf("the kernel is built with the %s sample, but no such mdev parent: %+v", parent, ps)
}

// createMdev makes a mediated device removed when the test ends.
func createMdev(t *testing.T, parent, typ string) string {
	t.Helper()
	d, err := mdev.Create(parent, typ, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := mdev.Remove(d.UUID); err != nil {
			t.Errorf("removing %s: %v", d.UUID, err)
		}
	})
	return d.UUID
}

// uart is port 0 of an opened mtty.
type uart struct {
	t   *testing.T
	bar *vfio.Region
}

func openUART(t *testing.T, h *vfio.Handle) uart {
	t.Helper()
	bar, err := h.Device().Region(vfio.BAR0Region)
	if err != nil {
		t.Fatal(err)
	}
	return uart{t, bar}
}

func (u uart) get(off int64) byte {
	u.t.Helper()
	b := make([]byte, 1)
	if _, err := u.bar.ReadAt(b, off); err != nil {
		u.t.Fatal(err)
	}
	return b[0]
}

func (u uart) set(off int64, v byte) {
	u.t.Helper()
	if _, err := u.bar.WriteAt([]byte{v}, off); err != nil {
		u.t.Fatal(err)
	}
}

// uartState is what TestMigration programs into a source and expects of
// its destination.
type uartState struct {
	fifo                   []byte
	scr, mcr, divLo, divHi byte
	lcr                    byte
}

// program writes s into the UART: the FIFO bytes (mtty loops TX back
// into RX), MCR, the scratch register, then the divisor, leaving DLAB set
// (a 16550's divisor is read back only with DLAB, and mtty clears it when
// DLAB is set again).
func (u uart) program(s uartState) {
	u.set(uartLCR, 0x03)
	for _, c := range s.fifo {
		u.set(uartData, c)
	}
	u.set(uartMCR, s.mcr)
	u.set(uartSCR, s.scr)
	u.set(uartLCR, s.lcr)
	u.set(uartData, s.divLo)
	u.set(uartDLM, s.divHi)
}

// check reads s back (and with it the FIFO, which reading empties).
func (u uart) check(what string, s uartState) {
	u.t.Helper()
	got := uartState{lcr: u.get(uartLCR), scr: u.get(uartSCR), mcr: u.get(uartMCR), divLo: u.get(uartData), divHi: u.get(uartDLM)}
	u.set(uartLCR, 0x03)
	for u.get(uartLSR)&lsrDR != 0 && len(got.fifo) <= 16 {
		got.fifo = append(got.fifo, u.get(uartData))
	}
	if !bytes.Equal(got.fifo, s.fifo) || got.scr != s.scr || got.mcr != s.mcr || got.lcr != s.lcr || got.divLo != s.divLo || got.divHi != s.divHi {
		u.t.Errorf("%s: LCR %#x SCR %#x MCR %#x divisor %#x%02x FIFO %x; want LCR %#x SCR %#x MCR %#x divisor %#x%02x FIFO %x",
			what, got.lcr, got.scr, got.mcr, got.divHi, got.divLo, got.fifo, s.lcr, s.scr, s.mcr, s.divHi, s.divLo, s.fifo)
	}
}

// marshal and unmarshalUART keep a state in a file across boots.
func (s uartState) marshal() []byte {
	return append([]byte{s.scr, s.mcr, s.divLo, s.divHi, s.lcr}, s.fifo...)
}

func unmarshalUART(t *testing.T, b []byte) uartState {
	if len(b) < 6 {
		t.Fatalf("a saved UART state of %d bytes", len(b))
	}
	return uartState{scr: b[0], mcr: b[1], divLo: b[2], divHi: b[3], lcr: b[4], fifo: b[5:]}
}

func randomUART(t *testing.T) uartState {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return uartState{fifo: b[8 : 9+int(b[7]%8)], scr: b[0] | 1, mcr: 0x10, divLo: b[1] | 1, divHi: b[2] | 1, lcr: lcrDLAB | 0x03}
}

// TestMigration carries an mtty's UART state (registers, FIFO bytes,
// divisor) into a second mtty through VFIO migration v2, in every mode
// the boot offers: pre-copy while running, stop-copy, resume; the same
// stream from source and destination; the kernel's refusals of arcs and
// streams; and the CLI's save, load and one-shot move. mtty has migration
// from Linux 6.7: on older kernels the test proves its absence.
func TestMigration(t *testing.T) {
	needMdev(t, "mtty")
	if linuxVersion(t) < linux(6, 7, 0) {
		uuid := createMdev(t, "mtty", "mtty-1")
		h, err := vfio.Open(uuid, &vfio.Options{Backend: vfio.Legacy})
		if err != nil {
			t.Fatal(err)
		}
		_, err = h.Device().Migration()
		h.Close()
		expect(t, "migration of mtty before Linux 6.7", err, vfioerr.ErrNotSupported, "implements no migration")
		out := mustExit(t, 4, "migrate", "state", uuid)
		t.Logf("Linux before 6.7: mtty has no migration: %v; vfioctl: %s", err, strings.TrimSpace(out))
		return
	}
	for _, m := range mdevModes {
		t.Run(m.name, func(t *testing.T) {
			if !offered(t, m.backend) {
				t.Skipf("the boot does not offer %s (%s=%s)", m.backend, qemu.OfferEnv, os.Getenv(qemu.OfferEnv))
			}
			srcID, dstID := createMdev(t, "mtty", "mtty-2"), createMdev(t, "mtty", "mtty-2")
			open := func(id string) (*vfio.Handle, *vfio.Migration) {
				h, err := vfio.Open(id, &vfio.Options{Backend: m.backend})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { h.Close() })
				mig, err := h.Device().Migration()
				if err != nil {
					t.Fatal(err)
				}
				return h, mig
			}
			srcH, src := open(srcID)
			dstH, dst := open(dstID)
			if want := vfio.MigrationStopCopy | vfio.MigrationP2P | vfio.MigrationPreCopy; src.Flags() != want {
				t.Errorf("mtty offers %s, want %s", src.Flags(), want)
			}
			if s, err := src.State(); err != nil || s != vfio.MigRunning {
				t.Fatalf("a new mtty is in %v (%v), want RUNNING", s, err)
			}
			want := randomUART(t)
			openUART(t, srcH).program(want)

			// PRE_COPY while running: the initial bytes, then none left.
			pre, err := src.SetState(vfio.MigPreCopy)
			if err != nil || pre == nil {
				t.Fatalf("RUNNING -> PRE_COPY: %v, data %v", err, pre)
			}
			info, err := pre.PrecopyInfo()
			if err != nil || info.InitialBytes == 0 {
				t.Errorf("pre-copy info on entry: %+v, %v; want initial bytes", info, err)
			}
			var preBuf bytes.Buffer
			if n, err := preBuf.ReadFrom(pre); err != nil || uint64(n) != info.InitialBytes {
				t.Errorf("read %d pre-copy bytes (%v), the kernel announced %d", n, err, info.InitialBytes)
			}
			if after, err := pre.PrecopyInfo(); err != nil || after.InitialBytes != 0 {
				t.Errorf("pre-copy info after reading it all: %+v, %v; want 0 initial bytes", after, err)
			}
			if _, err := src.SetState(vfio.MigRunning); err != nil {
				t.Fatal(err)
			}
			pre.Close()
			_, err = pre.PrecopyInfo()
			if err == nil {
				t.Error("pre-copy info on a closed data fd succeeded")
			}

			// The live move, then the same stream from both ends.
			st, err := vfio.Transfer(src, dst)
			if err != nil {
				t.Fatal(err)
			}
			if st.PreCopy != int64(preBuf.Len()) || st.StopCopy <= 0 {
				t.Errorf("transfer: %+v; want %d bytes pre-copy and some stop-copy", st, preBuf.Len())
			}
			for _, c := range []struct {
				m    *vfio.Migration
				want vfio.MigState
			}{{src, vfio.MigStop}, {dst, vfio.MigRunning}} {
				if s, err := c.m.State(); err != nil || s != c.want {
					t.Errorf("after the transfer: %v (%v), want %s", s, err, c.want)
				}
			}
			var fromSrc, fromDst bytes.Buffer
			if _, err := src.Save(&fromSrc); err != nil {
				t.Fatal(err)
			}
			if _, err := dst.Save(&fromDst); err != nil {
				t.Fatal(err)
			}
			if int64(fromSrc.Len()) != st.PreCopy+st.StopCopy || !bytes.Equal(fromSrc.Bytes(), fromDst.Bytes()) {
				t.Errorf("saved streams: source %d bytes, destination %d, transfer %d: want the same bytes",
					fromSrc.Len(), fromDst.Len(), st.PreCopy+st.StopCopy)
			}
			if size, err := src.StopCopySize(); err != nil || size != uint64(fromSrc.Len()) {
				t.Errorf("stop-copy size estimate %d (%v), stream %d", size, err, fromSrc.Len())
			}
			if _, err := dst.SetState(vfio.MigRunning); err != nil {
				t.Fatal(err)
			}
			openUART(t, dstH).check("destination after the transfer", want)
			t.Logf("%s: pre-copy %d bytes, stop-copy %d, stream %d; destination UART as the source's", m.name, st.PreCopy, st.StopCopy, fromSrc.Len())

			// Arcs the kernel refuses, named with where the device is.
			data, err := src.SetState(vfio.MigStopCopy)
			if err != nil {
				t.Fatal(err)
			}
			_, err = src.SetState(vfio.MigPreCopy)
			expect(t, "STOP_COPY -> PRE_COPY", err, unix.EINVAL, "STOP_COPY -> PRE_COPY", "blocks the move from STOP_COPY", "now in STOP_COPY")
			_, err = src.SetState(vfio.MigState(9))
			expect(t, "an unknown state", err, unix.EINVAL, "MigState(9)", "no such state")
			data.Close()
			if _, err := src.SetState(vfio.MigStop); err != nil {
				t.Fatal(err)
			}
			// RUNNING -> RESUMING: the kernel walks through STOP.
			if _, err := src.SetState(vfio.MigRunning); err != nil {
				t.Fatal(err)
			}
			if d, err := src.SetState(vfio.MigResuming); err != nil || d == nil {
				t.Errorf("RUNNING -> RESUMING: %v, data %v; want the walk through STOP", err, d)
			} else {
				d.Close()
			}
			if _, err := src.SetState(vfio.MigStop); err == nil {
				t.Error("RESUMING -> STOP with no stream written: accepted")
			}
			if err := srcH.Device().Reset(); err != nil {
				t.Fatal(err)
			}
			if s, err := src.State(); err != nil || s != vfio.MigRunning {
				t.Errorf("after a reset: %v (%v), want RUNNING", s, err)
			}

			// Streams the driver refuses: truncated (at the move to
			// STOP, the device left RESUMING), overlong (on write).
			stream := fromSrc.Bytes()
			_, err = dst.Load(bytes.NewReader(stream[:len(stream)-5]))
			expect(t, "a truncated stream", err, unix.EINVAL, "RESUMING -> STOP", "now in RESUMING")
			if err := dstH.Device().Reset(); err != nil {
				t.Fatal(err)
			}
			_, err = dst.Load(bytes.NewReader(append(slices.Clone(stream), 0)))
			expect(t, "an overlong stream", err, unix.ENOMEM, "loading")
			if err := dstH.Device().Reset(); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("cli", func(t *testing.T) { migrateCLI(t) })
}

// migrateCLI: vfioctl migrate state, save, load and the one-shot move,
// each checked by the UART state the destination ends with.
func migrateCLI(t *testing.T) {
	a, b, c := createMdev(t, "mtty", "mtty-1"), createMdev(t, "mtty", "mtty-1"), createMdev(t, "mtty", "mtty-1")
	want := randomUART(t)
	withUART := func(id string, f func(uart)) {
		h, err := vfio.Open(id, &vfio.Options{Backend: vfio.Legacy})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		f(openUART(t, h))
	}
	withUART(a, func(u uart) { u.program(want) })

	var st struct{ Device, Flags, State string }
	if err := json.Unmarshal([]byte(mustExit(t, 0, "migrate", "state", "--json", a)), &st); err != nil || st.Flags != "STOP_COPY|P2P|PRE_COPY" || st.State != "RUNNING" {
		t.Errorf("migrate state --json: %+v, %v", st, err)
	}
	file := filepath.Join(t.TempDir(), "mtty.state")
	mustExit(t, 0, "migrate", "save", a, file)
	if fi, err := os.Stat(file); err != nil || fi.Size() == 0 {
		t.Fatalf("saved state file: %v, %v", fi, err)
	}
	if out := mustExit(t, 0, "migrate", "state", a); !strings.Contains(out, "state STOP") {
		t.Errorf("after save the source is not stopped: %s", out)
	}
	mustExit(t, 0, "migrate", "load", b, file)
	withUART(b, func(u uart) { u.check("vfioctl migrate load", want) })

	// The one-shot move, from a source running again.
	mustExit(t, 0, "migrate", "load", a, file)
	var moved struct {
		PreCopy  int64 `json:"precopy_bytes"`
		StopCopy int64 `json:"stopcopy_bytes"`
	}
	if err := json.Unmarshal([]byte(mustExit(t, 0, "migrate", "--json", a, "--to", c)), &moved); err != nil || moved.PreCopy == 0 {
		t.Errorf("migrate --to --json: %+v, %v; want pre-copy bytes", moved, err)
	}
	withUART(c, func(u uart) { u.check("vfioctl migrate --to", want) })

	// A stream cut short: exit 1 naming the move refused; not a file: 2.
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, raw[:len(raw)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	if out := mustExit(t, 1, "migrate", "load", b, file); !strings.Contains(out, "RESUMING -> STOP") {
		t.Errorf("load of a truncated stream: %s", out)
	}
	mustExit(t, 2, "migrate", "load", b, file+".missing")
	mustExit(t, 2, "migrate", "state", "0000:ff:1f.7")
}
