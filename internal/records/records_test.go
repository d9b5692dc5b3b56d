package records

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

type rec struct {
	Key string `json:"key"`
	N   int    `json:"n"`
}

func keyIsName(name string, r rec) error {
	if r.Key != name {
		return fmt.Errorf("names %q", r.Key)
	}
	return nil
}

func TestRecords(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	if rs, err := List(dir, keyIsName); err != nil || rs != nil {
		t.Fatalf("List of no directory: %v, %v", rs, err)
	}
	for _, r := range []rec{{"b", 2}, {"a", 1}, {"b", 3}} {
		if err := Write(dir, r.Key, r); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "README"), []byte("not a record"), 0o644)
	rs, err := List(dir, keyIsName)
	if err != nil || len(rs) != 2 || rs[0] != (rec{"a", 1}) || rs[1] != (rec{"b", 3}) {
		t.Fatalf("List = %+v, %v", rs, err)
	}
	if err := Delete(dir, "a"); err != nil {
		t.Fatal(err)
	}
	if err := Delete(dir, "a"); !errors.Is(err, ErrNone) {
		t.Errorf("a second Delete: %v", err)
	}
	if err := os.WriteFile(Path(dir, "c"), []byte(`{"key":"b"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := List(dir, keyIsName); err == nil {
		t.Error("a record whose key is not its name was listed")
	}
}
