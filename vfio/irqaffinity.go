package vfio

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/vfioerr"
)

// procRoot is where /proc is (tests point it at a fake tree).
var procRoot = "/proc"

// IRQ is the host interrupt number behind vector of index (MSI or MSI-X)
// of a PCI device, once SetEventfds or SetTriggers has wired it: vfio-pci
// names it "vfio-msix[VECTOR](ADDRESS)" in /proc/interrupts. A vector not
// wired is an error wrapping os.ErrNotExist.
func (d *Device) IRQ(index IRQIndex, vector int) (int, error) {
	call := kernel.Call{Op: "find the host IRQ", Object: d.Name(), Args: fmt.Sprintf("index %d vector %d", index, vector)}
	var kind string
	switch index {
	case MSIIRQ:
		kind = "msi"
	case MSIXIRQ:
		kind = "msix"
	default:
		return 0, call.Fail(fmt.Errorf("only MSI and MSI-X vectors have host IRQs of their own: %w", vfioerr.ErrNotSupported))
	}
	dir, err := d.sysfsDir()
	if err != nil {
		return 0, err
	}
	name := fmt.Sprintf("vfio-%s[%d](%s)", kind, vector, filepath.Base(dir))
	f, err := os.Open(filepath.Join(procRoot, "interrupts"))
	if err != nil {
		return 0, call.Fail(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[len(fields)-1] != name {
			continue
		}
		if n, err := strconv.Atoi(strings.TrimSuffix(fields[0], ":")); err == nil {
			return n, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, call.Fail(err)
	}
	return 0, call.Fail(fmt.Errorf("no %s in /proc/interrupts (is the vector wired?): %w", name, os.ErrNotExist))
}

// SetIRQAffinity sends the host interrupt behind vector of index to cpus
// (`echo 1 > /proc/irq/N/smp_affinity_list`), so the eventfd it signals
// wakes a waiter on those CPUs without a cross-CPU wakeup. It returns the
// affinity it replaced, to put back with another call. Needs root.
func (d *Device) SetIRQAffinity(index IRQIndex, vector int, cpus ...int) (previous []int, err error) {
	irq, err := d.IRQ(index, vector)
	if err != nil {
		return nil, err
	}
	if len(cpus) == 0 {
		return nil, kernel.Call{Op: "set IRQ affinity", Object: d.Name(), Args: fmt.Sprintf("irq %d", irq)}.Fail(fmt.Errorf("no CPUs given"))
	}
	path := filepath.Join(procRoot, "irq", strconv.Itoa(irq), "smp_affinity_list")
	call := kernel.Call{Op: "set IRQ affinity", Object: d.Name(), Args: fmt.Sprintf("irq %d cpus %v", irq, cpus)}
	old, err := os.ReadFile(path)
	if err != nil {
		return nil, call.Fail(err)
	}
	if previous, err = parseCPUList(strings.TrimSpace(string(old))); err != nil {
		return nil, call.Fail(err)
	}
	list := make([]string, len(cpus))
	for i, c := range cpus {
		list[i] = strconv.Itoa(c)
	}
	if err := os.WriteFile(path, []byte(strings.Join(list, ",")), 0); err != nil {
		return nil, call.Fail(err)
	}
	return previous, nil
}

// parseCPUList reads a kernel CPU list ("0-2,5").
func parseCPUList(s string) ([]int, error) {
	var cpus []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("CPU list %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("CPU list %q: bad range %q", s, part)
			}
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}
