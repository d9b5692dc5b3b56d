package pci

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// IDPaths are where pciutils/hwdata keep the PCI ID database.
var IDPaths = []string{"/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids", "/usr/share/pci.ids"}

type idDB struct {
	vendors map[uint16]string
	devices map[uint32]string
	classes map[uint32]string // class<<8|subclass
}

var (
	idsOnce sync.Once
	ids     *idDB
)

func loadIDs() *idDB {
	idsOnce.Do(func() {
		ids = &idDB{vendors: map[uint16]string{}, devices: map[uint32]string{}, classes: map[uint32]string{}}
		for _, p := range IDPaths {
			if f, err := os.Open(p); err == nil {
				ids.parse(f)
				f.Close()
				return
			}
		}
	})
	return ids
}

func (db *idDB) parse(f *os.File) {
	sc := bufio.NewScanner(f)
	var vendor uint16
	var class uint32
	inClass := false
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		tabs := len(l) - len(strings.TrimLeft(l, "\t"))
		body := strings.TrimLeft(l, "\t")
		id, name, ok := strings.Cut(body, "  ")
		if !ok {
			continue
		}
		switch {
		case tabs == 0 && strings.HasPrefix(id, "C "):
			v, _ := strconv.ParseUint(strings.TrimPrefix(id, "C "), 16, 8)
			class, inClass = uint32(v), true
			db.classes[class<<8|0xff] = name
		case tabs == 0:
			v, err := strconv.ParseUint(id, 16, 16)
			inClass = err != nil
			vendor = uint16(v)
			db.vendors[vendor] = name
		case tabs == 1 && inClass:
			v, _ := strconv.ParseUint(id, 16, 8)
			db.classes[class<<8|uint32(v)] = name
		case tabs == 1:
			v, _ := strconv.ParseUint(id, 16, 16)
			db.devices[uint32(vendor)<<16|uint32(v)] = name
		}
	}
}

func (db *idDB) names(v, d uint16) (string, string) {
	return db.vendors[v], db.devices[uint32(v)<<16|uint32(d)]
}

// className names a class code; without the database, a few common ones.
func (db *idDB) className(class uint32) string {
	if n := db.classes[class>>8]; n != "" {
		return n
	}
	if n := db.classes[(class>>16)<<8|0xff]; n != "" {
		return n
	}
	builtin := map[uint32]string{0x0100: "SCSI storage controller", 0x0106: "SATA controller", 0x0108: "Non-Volatile memory controller",
		0x0200: "Ethernet controller", 0x0300: "VGA compatible controller", 0x0600: "Host bridge", 0x0601: "ISA bridge",
		0x0604: "PCI bridge", 0x0c05: "SMBus", 0x00ff: "Unclassified device"}
	if n := builtin[class>>8]; n != "" {
		return n
	}
	return fmt.Sprintf("Class %04x", class>>8)
}

// modulesFor matches a modalias against the running kernel's
// modules.alias (built-in drivers have no entry there).
func modulesFor(modalias string) []string {
	if modalias == "" {
		return nil
	}
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return nil
	}
	f, err := os.Open(filepath.Join("/lib/modules", unix.ByteSliceToString(u.Release[:]), "modules.alias"))
	if err != nil {
		return nil
	}
	defer f.Close()
	seen := map[string]bool{}
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) != 3 || fl[0] != "alias" || !strings.HasPrefix(fl[1], "pci:") {
			continue
		}
		if ok, _ := filepath.Match(fl[1], modalias); ok && !seen[fl[2]] {
			seen[fl[2]] = true
			out = append(out, fl[2])
		}
	}
	return out
}
