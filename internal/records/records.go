// Package records keeps small JSON records in a directory, one file per
// record named NAME.json, each written whole or not at all: what the
// product keeps across reboots (pci's saved bindings, mdev's definitions).
package records

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Path is where the record name lives in dir.
func Path(dir, name string) string { return filepath.Join(dir, name+".json") }

// Write saves v as the record name in dir (made if missing), replacing
// the one there through a rename, so a reader never sees half a record.
func Write(dir, name string, v any) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := Path(dir, name) + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, Path(dir, name))
}

// ErrNone: the record does not exist.
var ErrNone = errors.New("no such record")

// Delete removes the record name; one that is not there is ErrNone.
func Delete(dir, name string) error {
	err := os.Remove(Path(dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return ErrNone
	}
	return err
}

// Read decodes the record at path; check(name, record) refuses one that
// is not what it claims (its key must be its file's name).
func Read[T any](path string, check func(name string, r T) error) (T, error) {
	var r T
	b, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("%s: %w", path, err)
	}
	if err := check(strings.TrimSuffix(filepath.Base(path), ".json"), r); err != nil {
		return r, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// List reads every record in dir, by name; no directory is no records.
// A file that is not a record (check) is an error, not skipped.
func List[T any](dir string, check func(name string, r T) error) ([]T, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".json") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var out []T
	for _, n := range names {
		r, err := Read(filepath.Join(dir, n), check)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}
