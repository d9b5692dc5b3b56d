package mdev

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestDefinitions(t *testing.T) {
	u := fakeSysfs(t)
	old := DefinitionsDir
	DefinitionsDir = filepath.Join(t.TempDir(), "mdev")
	t.Cleanup(func() { DefinitionsDir = old })

	if ds, err := Definitions(); err != nil || ds != nil {
		t.Fatalf("no directory yet: %v, %v", ds, err)
	}
	const gone = "0b6c1a3e-6a4c-4d8e-9a51-2f0c8f1e9d01"
	if _, err := Define("mtty", "mtty-2", u); err != nil {
		t.Fatal(err)
	}
	if _, err := Define("0000:00:02.0", "i915-GVTg_V5_4", gone); err != nil {
		t.Fatal(err)
	}
	if _, err := Define("mtty", "mtty-2", "not-a-uuid"); !errors.Is(err, unix.EINVAL) {
		t.Errorf("a bad UUID: %v, want EINVAL", err)
	}
	if _, err := Define("../mtty", "mtty-2", gone); !errors.Is(err, unix.EINVAL) {
		t.Errorf("a parent with a slash: %v, want EINVAL", err)
	}
	ds, err := Definitions()
	if err != nil || len(ds) != 2 || ds[0].UUID != gone || ds[1].UUID != u || ds[1].Type != "mtty-2" || ds[1].Saved == "" {
		t.Fatalf("Definitions = %+v, %v", ds, err)
	}
	// Start: the existing device is left alone, the absent parent's
	// definition kept for later; with a parent named, only its own.
	st, err := Start("")
	if err != nil || len(st) != 2 || st[0].Result != "parent absent" || st[1].Result != "exists" {
		t.Errorf("Start = %+v, %v", st, err)
	}
	if st, err := Start("mtty"); err != nil || len(st) != 1 || st[0].UUID != u {
		t.Errorf("Start(mtty) = %+v, %v", st, err)
	}
	if err := Undefine(gone); err != nil {
		t.Fatal(err)
	}
	if err := Undefine(gone); !errors.Is(err, ErrNotDefined) {
		t.Errorf("a second Undefine: %v, want ErrNotDefined", err)
	}
	// A file that is not a definition is reported, not skipped.
	if err := os.WriteFile(filepath.Join(DefinitionsDir, gone+".json"), []byte(`{"uuid":"`+u+`"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Definitions(); err == nil {
		t.Error("a definition whose UUID is not its file's name was read")
	}
}
