package qemu

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestArchiveCpio checks the archive with an independent reader: GNU cpio
// must list and extract exactly what was added.
func TestArchiveCpio(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Fatal("cpio is needed (apt-get install cpio)")
	}
	a := NewArchive()
	a.File("bin/hello", []byte("hi there\n"), 0o755)
	a.Symlink("bin/sh", "busybox")
	a.Dir("tmp")
	var buf bytes.Buffer
	if _, err := a.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive length %d is not 4-byte aligned", buf.Len())
	}
	dir := t.TempDir()
	cmd := exec.Command("cpio", "-id", "--quiet")
	cmd.Dir, cmd.Stdin = dir, &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -id: %v: %s", err, out)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "bin/hello")); err != nil || string(b) != "hi there\n" {
		t.Errorf("bin/hello = %q, %v", b, err)
	}
	if l, err := os.Readlink(filepath.Join(dir, "bin/sh")); err != nil || l != "busybox" {
		t.Errorf("bin/sh -> %q, %v", l, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "tmp")); err != nil || !fi.IsDir() {
		t.Errorf("tmp: %v", err)
	}
}
