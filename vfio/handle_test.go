package vfio

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/dma"
	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// fakeBackend records what a Handle asks of its backend, as rust-vmm
// tests its VfioDevice against a fake syscall layer: the Handle's logic
// (choosing, joining, reference counting, closing, hot reset routing) is
// checked on any machine.
type fakeBackend struct {
	kind   Backend
	log    *[]string
	failOn string // bdf whose open fails
	opened []string
	closed bool
	proof  []Dependent
}

func (f *fakeBackend) open(h *Handle, bdf string, o *Options) error {
	*f.log = append(*f.log, "open "+bdf)
	if bdf == f.failOn {
		return kernel.Call{Op: "open", Object: bdf}.Fail(unix.ENODEV)
	}
	fd, err := kernel.OpenPath("/dev/null", nil)
	if err != nil {
		return err
	}
	fd.Rename(bdf)
	h.device = &Device{fd: fd}
	f.opened = append(f.opened, bdf)
	return nil
}
func (f *fakeBackend) mapper() dma.Mapper { return nil }
func (f *fakeBackend) expose(h *Handle)   {}
func (f *fakeBackend) hotReset(d *Device, deps []Dependent) error {
	f.proof = deps
	return nil
}
func (f *fakeBackend) describe(*handoff, func(string, duper)) {}
func (f *fakeBackend) release(h *Handle) []error {
	if h.device != nil {
		*f.log = append(*f.log, "release "+h.device.Name())
	}
	return nil
}
func (f *fakeBackend) close() []error {
	*f.log = append(*f.log, "close space")
	f.closed = true
	return nil
}

func allOffered() []Offer {
	return []Offer{{Backend: Cdev, OK: true}, {Backend: GroupIOMMUFD, OK: true}, {Backend: Legacy, OK: true}, {Backend: IOMMUFDCompat, OK: true}}
}

func fakeOpen(t *testing.T, log *[]string, made *[]*fakeBackend) func(string, *Options) (*Handle, error) {
	return func(bdf string, o *Options) (*Handle, error) {
		return open(bdf, o, allOffered, func(b Backend, noIOMMU bool) (backend, error) {
			f := &fakeBackend{kind: b, log: log, failOn: "bad"}
			*made = append(*made, f)
			return f, nil
		})
	}
}

// Handles joined into one space share its backend; the space closes with
// its last Handle, after every Handle released what it held alone.
func TestHandleJoinAndClose(t *testing.T) {
	var log []string
	var made []*fakeBackend
	openFake := fakeOpen(t, &log, &made)
	a, err := openFake("a", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := openFake("b", &Options{Join: a})
	if err != nil {
		t.Fatal(err)
	}
	if len(made) != 1 || !slices.Equal(made[0].opened, []string{"a", "b"}) || a.backend != Cdev || b.backend != Cdev {
		t.Fatalf("backends %d, opened %v, kinds %v %v: want one Cdev space with a and b", len(made), made[0].opened, a.backend, b.backend)
	}
	if err := a.Close(); err != nil || made[0].closed {
		t.Fatalf("first Close: %v, space closed %v", err, made[0].closed)
	}
	if err := a.Close(); !errors.Is(err, vfioerr.ErrClosed) {
		t.Errorf("second Close: %v, want ErrClosed", err)
	}
	if _, err := openFake("c", &Options{Join: a}); !errors.Is(err, vfioerr.ErrClosed) {
		t.Errorf("Join of a closed Handle: %v, want ErrClosed", err)
	}
	if err := b.Close(); err != nil || !made[0].closed {
		t.Fatalf("last Close: %v, space closed %v", err, made[0].closed)
	}
	want := []string{"open a", "open b", "release a", "release b", "close space"}
	if !slices.Equal(log, want) {
		t.Errorf("calls %v, want %v", log, want)
	}
}

// A failed open closes what it made: the space of a lone Handle goes.
func TestHandleOpenFailure(t *testing.T) {
	var log []string
	var made []*fakeBackend
	_, err := fakeOpen(t, &log, &made)("bad", nil)
	if !errors.Is(err, unix.ENODEV) || !strings.Contains(err.Error(), "via cdev") {
		t.Fatalf("open: %v", err)
	}
	if !made[0].closed {
		t.Error("the space of a failed open stays open")
	}
}

// Options are checked once, up front, against the backend chosen: a
// combination that means nothing there is EINVAL naming the option, and
// nothing is opened.
func TestOptionsCheckedUpFront(t *testing.T) {
	var log []string
	var made []*fakeBackend
	openFake := fakeOpen(t, &log, &made)
	tok := VFToken{}
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{Backend: Cdev, IOMMU: Type1v2}, "Options.IOMMU"},
		{Options{Backend: GroupIOMMUFD, IOMMU: Type1}, "Options.IOMMU"},
		{Options{Backend: Legacy, RlimitPerProcess: true}, "Options.RlimitPerProcess"},
		{Options{Backend: IOMMUFDCompat, RlimitPerProcess: true}, "Options.RlimitPerProcess"},
		{Options{Backend: Cdev, VFToken: &tok}, "Options.VFToken"},
	} {
		_, err := openFake("x", &c.o)
		if !errors.Is(err, unix.EINVAL) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want EINVAL naming %s", c.o, err, c.want)
		}
	}
	if len(made) != 0 {
		t.Errorf("refused options still made %d backends", len(made))
	}
	a, err := openFake("a", &Options{Backend: Legacy})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for _, o := range []Options{{Join: a, IOMMU: Type1}, {Join: a, RlimitPerProcess: true}, {Join: a, Backend: Cdev}} {
		if _, err := openFake("b", &o); !errors.Is(err, unix.EINVAL) {
			t.Errorf("join with %+v: %v, want EINVAL", o, err)
		}
	}
}

// Auto picks the best offered backend the other options suit.
func TestChoose(t *testing.T) {
	only := func(ok ...Backend) func() []Offer {
		return func() []Offer {
			var out []Offer
			for _, of := range allOffered() {
				of.OK = slices.Contains(ok, of.Backend)
				out = append(out, of)
			}
			return out
		}
	}
	tok := VFToken{}
	for _, c := range []struct {
		o       Options
		noIOMMU bool
		offers  func() []Offer
		want    Backend
	}{
		{Options{}, false, allOffered, Cdev},
		{Options{}, false, only(GroupIOMMUFD, Legacy), GroupIOMMUFD},
		{Options{}, false, only(Legacy), Legacy},
		{Options{}, false, only(), Legacy},
		{Options{IOMMU: Type1}, false, allOffered, Legacy},
		{Options{IOMMU: Type1}, false, only(IOMMUFDCompat), IOMMUFDCompat},
		{Options{RlimitPerProcess: true}, false, only(GroupIOMMUFD, Legacy), GroupIOMMUFD},
		{Options{VFToken: &tok}, false, allOffered, GroupIOMMUFD},
		{Options{NoIOMMU: true}, true, allOffered, Legacy},
		{Options{NoIOMMU: true}, false, allOffered, Cdev},
		{Options{Backend: IOMMUFDCompat}, false, only(), IOMMUFDCompat},
	} {
		if got := choose(&c.o, c.noIOMMU, c.offers); got != c.want {
			t.Errorf("choose(%+v, noIOMMU %v) = %v, want %v", c.o, c.noIOMMU, got, c.want)
		}
	}
}

// One vocabulary: every Backend's name parses back, and so does the word
// the device plugin puts in VFIOCTL_BACKEND.
func TestParseBackend(t *testing.T) {
	for b := Auto; b <= Legacy; b++ {
		if got, err := ParseBackend(b.String()); err != nil || got != b {
			t.Errorf("ParseBackend(%q) = %v, %v", b.String(), got, err)
		}
	}
	if got, err := ParseBackend("iommufd"); err != nil || got != Cdev {
		t.Errorf(`ParseBackend("iommufd") = %v, %v; want cdev`, got, err)
	}
	if _, err := ParseBackend("vfio"); err == nil {
		t.Error(`ParseBackend("vfio") accepted`)
	}
}

// The group proof of a hot reset: every dependent's group must be open in
// the space; the error names those that are not.
func TestGroupHotResetProof(t *testing.T) {
	fd, err := kernel.OpenPath("/dev/null", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	fd.Rename("0000:00:03.0")
	s := groupSet{groups: map[int]*sharedGroup{7: {g: &Group{id: 7}, refs: 1}}}
	deps := []Dependent{{Bus: 0, Devfn: 3 << 3, GroupID: 7}, {Bus: 0, Devfn: 4 << 3, GroupID: 9}}
	err = s.hotReset(&Device{fd: fd}, deps)
	if !errors.Is(err, unix.EPERM) || !strings.Contains(err.Error(), "0000:00:04.0 (IOMMU group 9, not open here)") || strings.Contains(err.Error(), "group 7") {
		t.Errorf("hot reset with group 9 not open: %v", err)
	}
	c := &cdevBackend{}
	err = c.hotReset(&Device{fd: fd}, []Dependent{{Devfn: 3 << 3, DevID: 1, DevIDSet: true}, {Devfn: 5 << 3, DevID: NotOwned, DevIDSet: true}})
	if !errors.Is(err, unix.EPERM) || !strings.Contains(err.Error(), "0000:00:05.0 (not bound to this iommufd)") {
		t.Errorf("cdev hot reset with a device not bound here: %v", err)
	}
}
