package pci

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/sysfs"
)

// UnsafeError says why taking a device from its driver would hurt the host:
// a network interface in use or a disk in use. Bind refuses with it unless
// forced.
type UnsafeError struct {
	Address string
	Reasons []string
}

func (e *UnsafeError) Error() string {
	return fmt.Sprintf("taking %s from its driver would disrupt the host: %s", e.Address, strings.Join(e.Reasons, "; "))
}

// InUse lists why d is in use on the host: NICs that are up with addresses
// or routes, block devices that are mounted, used as swap, or held by
// another block device (LVM, RAID, dm-crypt). Empty means safe.
func InUse(d *Device) ([]string, error) {
	var reasons []string
	for _, n := range d.Netdevs {
		r, err := netdevInUse(n)
		if err != nil {
			return nil, err
		}
		reasons = append(reasons, r...)
	}
	for _, b := range d.BlockDevs {
		r, err := blockInUse(b)
		if err != nil {
			return nil, err
		}
		reasons = append(reasons, r...)
	}
	return reasons, nil
}

// netdevInUse is `ip addr show dev N` and `ip route show dev N` (all tables).
func netdevInUse(name string) ([]string, error) {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("pci: netlink: link %s: %w", name, err)
	}
	attrs := link.Attrs()
	up := attrs.Flags&net.FlagUp != 0
	var reasons []string
	addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("pci: netlink: addresses of %s: %w", name, err)
	}
	var shown []string
	for _, a := range addrs {
		if a.IP.IsLinkLocalUnicast() {
			continue // every IPv6 link has one; it carries no configuration
		}
		shown = append(shown, a.IPNet.String())
	}
	if up && len(shown) > 0 {
		reasons = append(reasons, fmt.Sprintf("interface %s is up with addresses %s", name, strings.Join(shown, ", ")))
	}
	filter := &netlink.Route{LinkIndex: attrs.Index, Table: unix.RT_TABLE_UNSPEC}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, filter, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("pci: netlink: routes of %s: %w", name, err)
	}
	for _, r := range routes {
		if r.Type != unix.RTN_UNICAST || r.Table == unix.RT_TABLE_LOCAL || (r.Dst != nil && r.Dst.IP.IsLinkLocalUnicast()) {
			continue
		}
		if r.Dst == nil || r.Dst.IP.IsUnspecified() {
			reasons = append(reasons, fmt.Sprintf("interface %s carries the default route", name))
		} else if up {
			reasons = append(reasons, fmt.Sprintf("interface %s carries the route to %s", name, r.Dst))
		}
	}
	return reasons, nil
}

// blockInUse checks a disk and its partitions.
func blockInUse(disk string) ([]string, error) {
	devs := []string{disk}
	parts, _ := filepath.Glob(filepath.Join(sysfs.Root, "class", "block", disk, disk+"*"))
	for _, p := range parts {
		devs = append(devs, filepath.Base(p))
	}
	mounts, err := mountsByDev()
	if err != nil {
		return nil, err
	}
	swaps, _ := os.ReadFile("/proc/swaps")
	var reasons []string
	for _, b := range devs {
		dev := strings.TrimSpace(readStr(filepath.Join(sysfs.Root, "class", "block", b), "dev"))
		for _, m := range mounts[dev] {
			reasons = append(reasons, fmt.Sprintf("/dev/%s is mounted on %s", b, m))
		}
		if holders := names(filepath.Join(sysfs.Root, "class", "block", b, "holders")); len(holders) > 0 {
			reasons = append(reasons, fmt.Sprintf("/dev/%s is held by %s", b, strings.Join(holders, ", ")))
		}
		for _, l := range strings.Split(string(swaps), "\n")[1:] {
			if f := strings.Fields(l); len(f) > 0 && f[0] == "/dev/"+b {
				reasons = append(reasons, fmt.Sprintf("/dev/%s is in use as swap", b))
			}
		}
	}
	return reasons, nil
}

// mountsByDev maps "major:minor" to mount points from /proc/self/mountinfo.
func mountsByDev() (map[string][]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) > 4 {
			out[fl[2]] = append(out[fl[2]], fl[4])
		}
	}
	return out, sc.Err()
}
