package pci

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestPersistRoundTrip: saved bindings are listed with their options,
// replaced when saved again, and deleted; a corrupt or misnamed file is an
// error naming it. Applying them to the fake tree reports the device that
// is absent, leaves it saved, and says "already bound" for one on
// vfio-pci (the fake tree cannot bind; the guest test does).
func TestPersistRoundTrip(t *testing.T) {
	fakeSysfs(t)
	old := PersistDir
	PersistDir = filepath.Join(t.TempDir(), "persist")
	t.Cleanup(func() { PersistDir = old })

	if l, err := ListPersisted(); err != nil || l != nil {
		t.Fatalf("nothing saved: %v, %v", l, err)
	}
	owner := &Owner{UID: 1000, GID: 100}
	if _, err := Persist("00:03.0", BindOptions{Owner: owner}); err != nil {
		t.Fatal(err)
	}
	if _, err := Persist("0000:00:09.0", BindOptions{Group: true, Force: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := Persist("0000:00:09.0", BindOptions{Group: true}); err != nil { // replaces
		t.Fatal(err)
	}
	l, err := ListPersisted()
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != 2 || l[0].Address != "0000:00:03.0" || !reflect.DeepEqual(l[0].Owner, owner) ||
		l[1].Address != "0000:00:09.0" || !l[1].Group || l[1].Force || l[1].Saved == "" {
		t.Fatalf("saved = %+v", l)
	}
	if o := l[1].Options(); !o.Group || o.Force || o.Owner != nil {
		t.Errorf("options = %+v", o)
	}

	// 00:03.0 is on vfio-pci already; 00:09.0 does not exist.
	// SetOwner on the fake tree fails (no /dev/vfio/1 here), which is
	// reported for that device only.
	res, err := ApplyPersisted("")
	if len(res) != 2 || res[1].Result != "absent" || res[0].Result != "failed" || !strings.Contains(res[0].Error, "/dev/vfio/1") {
		t.Fatalf("apply = %+v, %v", res, err)
	}
	if err == nil {
		t.Error("a failed device gave no error")
	}
	if res, err := ApplyPersisted("0000:00:09.0"); err != nil || len(res) != 1 || res[0].Result != "absent" {
		t.Fatalf("apply one = %+v, %v", res, err)
	}
	if _, err := ApplyPersisted("0000:00:05.0"); !errors.Is(err, ErrNotPersisted) {
		t.Errorf("apply of an unsaved device = %v", err)
	}

	if err := Unpersist("00:09.0"); err != nil {
		t.Fatal(err)
	}
	if err := Unpersist("00:09.0"); !errors.Is(err, ErrNotPersisted) {
		t.Errorf("second Unpersist = %v", err)
	}
	if _, err := Persist("../x", BindOptions{}); err == nil {
		t.Error("Persist accepted a traversal")
	}

	// A file whose content names another device is refused.
	if err := os.WriteFile(filepath.Join(PersistDir, "0000:00:05.0.json"), []byte(`{"address":"0000:00:03.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ListPersisted(); err == nil || !strings.Contains(err.Error(), "0000:00:05.0.json") {
		t.Errorf("misnamed file: %v", err)
	}
}

func TestParseOwner(t *testing.T) {
	for in, want := range map[string]Owner{"1000:100": {1000, 100}, "0:0": {0, 0}, "root": {0, 0}, "root:0": {0, 0}} {
		if o, err := ParseOwner(in); err != nil || o != want {
			t.Errorf("ParseOwner(%q) = %v, %v", in, o, err)
		}
	}
	for _, in := range []string{"", ":", "1000", "1000:", ":100", "-1:5", "no-such-user-xyz", "1:no-such-group-xyz"} {
		if o, err := ParseOwner(in); err == nil {
			t.Errorf("ParseOwner(%q) = %v, want an error", in, o)
		}
	}
}
