package pci

import (
	"fmt"
	"strconv"
	"strings"
)

// Address is a PCI function address, domain:bus:slot.function.
type Address struct {
	Domain   uint16
	Bus      uint8
	Slot     uint8 // 0-31
	Function uint8 // 0-7
}

func (a Address) String() string {
	return fmt.Sprintf("%04x:%02x:%02x.%d", a.Domain, a.Bus, a.Slot, a.Function)
}

// ParseAddress parses "0000:00:03.0" or "00:03.0" (domain 0). It is strict:
// hex fields of the right width, slot below 32, function below 8, nothing
// else (no path separators, no "..", no NUL), so the result is always safe
// to join to a sysfs path.
func ParseAddress(s string) (Address, error) {
	bad := func(why string) (Address, error) {
		return Address{}, fmt.Errorf("pci: invalid address %q: %s (want DDDD:BB:SS.F, e.g. 0000:00:03.0)", clip(s), why)
	}
	if len(s) > len("0000:00:00.0") {
		return bad("too long")
	}
	parts := strings.Split(s, ":")
	var dom, bus, devfn string
	switch len(parts) {
	case 2:
		dom, bus, devfn = "0000", parts[0], parts[1]
	case 3:
		dom, bus, devfn = parts[0], parts[1], parts[2]
	default:
		return bad("wrong number of ':'")
	}
	slot, fn, ok := strings.Cut(devfn, ".")
	if !ok {
		return bad("missing '.function'")
	}
	d, err1 := hexField(dom, 4)
	b, err2 := hexField(bus, 2)
	sl, err3 := hexField(slot, 2)
	f, err4 := hexField(fn, 1)
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
		return bad("fields must be hexadecimal of widths 4:2:2.1")
	}
	if sl > 31 {
		return bad("slot above 0x1f")
	}
	if f > 7 {
		return bad("function above 7")
	}
	return Address{Domain: uint16(d), Bus: uint8(b), Slot: uint8(sl), Function: uint8(f)}, nil
}

func hexField(s string, width int) (uint64, error) {
	if len(s) != width {
		return 0, fmt.Errorf("width")
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return 0, fmt.Errorf("not hex")
		}
	}
	return strconv.ParseUint(s, 16, 64)
}

func clip(s string) string {
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return strconv.Quote(s)[1 : len(strconv.Quote(s))-1]
}
