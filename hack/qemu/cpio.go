package qemu

import (
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
)

// Archive is an initramfs under construction: a newc ("070701") cpio
// archive, the format the kernel unpacks into its rootfs.
type Archive struct {
	entries map[string]entry
}

type entry struct {
	mode         uint32
	data         []byte
	major, minor uint32
}

const (
	modeDir  = 0o040000
	modeFile = 0o100000
	modeLink = 0o120000
	modeChar = 0o020000
)

// NewArchive returns an empty archive.
func NewArchive() *Archive { return &Archive{entries: map[string]entry{}} }

// File adds a file (and its parent directories) with the given permissions.
func (a *Archive) File(name string, data []byte, perm uint32) {
	a.dirs(path.Dir(name))
	a.entries[clean(name)] = entry{mode: modeFile | perm, data: data}
}

// Symlink adds a symbolic link name -> target.
func (a *Archive) Symlink(name, target string) {
	a.dirs(path.Dir(name))
	a.entries[clean(name)] = entry{mode: modeLink | 0o777, data: []byte(target)}
}

// CharDev adds a character device node.
func (a *Archive) CharDev(name string, major, minor uint32) {
	a.dirs(path.Dir(name))
	a.entries[clean(name)] = entry{mode: modeChar | 0o600, major: major, minor: minor}
}

// Dir adds a directory and its parents.
func (a *Archive) Dir(name string) { a.dirs(name) }

func (a *Archive) dirs(name string) {
	for n := clean(name); n != "" && n != "."; n = path.Dir(n) {
		if _, ok := a.entries[n]; !ok {
			a.entries[n] = entry{mode: modeDir | 0o755}
		}
	}
}

func clean(name string) string { return strings.TrimPrefix(path.Clean("/"+name), "/") }

// WriteTo writes the archive, parents before children, ending with the
// TRAILER!!! record.
func (a *Archive) WriteTo(w io.Writer) (int64, error) {
	names := make([]string, 0, len(a.entries))
	for n := range a.entries {
		names = append(names, n)
	}
	sort.Strings(names) // a parent sorts before its children
	cw := &countWriter{w: w}
	for i, n := range names {
		e := a.entries[n]
		writeRecord(cw, uint32(i+1), n, e)
	}
	writeRecord(cw, 0, "TRAILER!!!", entry{})
	return cw.n, cw.err
}

func writeRecord(w *countWriter, ino uint32, name string, e entry) {
	nlink := uint32(1)
	if e.mode&modeDir == modeDir && e.mode&modeFile == 0 {
		nlink = 2
	}
	fmt.Fprintf(w, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, e.mode, 0, 0, nlink, 0, len(e.data), 0, 0, e.major, e.minor, len(name)+1, 0)
	w.Write(append([]byte(name), 0))
	w.pad()
	w.Write(e.data)
	w.pad()
}

type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
	return n, err
}

func (c *countWriter) pad() {
	if r := c.n % 4; r != 0 {
		c.Write(make([]byte, 4-r))
	}
}
