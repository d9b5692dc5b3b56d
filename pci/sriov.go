package pci

import (
	"fmt"
	"path/filepath"
	"strconv"
	"time"
)

// SetNumVFs enables n SR-IOV virtual functions on the physical function at
// addr (0 disables them): echo n > sriov_numvfs, through 0 first when some
// are enabled, as the kernel requires. A PF on vfio-pci needs vfio-pci
// loaded with enable_sriov=1; vfio-pci then binds the VFs to itself. It
// waits up to timeout for the VFs to appear.
func SetNumVFs(addr string, n int, timeout time.Duration) error {
	d, err := Get(addr)
	if err != nil {
		return err
	}
	if d.TotalVFs == 0 {
		return fmt.Errorf("pci: %s is not an SR-IOV physical function (no sriov_totalvfs)", d.Address)
	}
	if n < 0 || n > d.TotalVFs {
		return fmt.Errorf("pci: %s supports 0 to %d VFs, not %d", d.Address, d.TotalVFs, n)
	}
	file := filepath.Join(devDir(d.Address), "sriov_numvfs")
	if len(d.VirtFns) > 0 && n != 0 {
		if err := writeSysfs(file, "0"); err != nil {
			return err
		}
	}
	if err := writeSysfs(file, strconv.Itoa(n)); err != nil {
		if d.Driver == VFIODriver {
			return fmt.Errorf("%w (vfio-pci enables VFs only when loaded with enable_sriov=1, and not while they are open)", err)
		}
		return err
	}
	for end := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		now, err := Get(d.Address)
		if err != nil {
			return err
		}
		if len(now.VirtFns) == n {
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("pci: %s: %d VFs after %s, want %d", d.Address, len(now.VirtFns), timeout, n)
		}
	}
}
