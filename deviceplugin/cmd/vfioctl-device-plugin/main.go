// Command vfioctl-device-plugin offers PCI devices bound to vfio-pci to
// the kubelet as extended resources (device plugin API v1beta1), one
// resource per vendor:device ID, and keeps a CDI spec of them.
//
//	vfioctl-device-plugin                                    a resource per ID found on vfio-pci
//	vfioctl-device-plugin --resource example.com/nic=8086:10d3,8086:1521
//	vfioctl-device-plugin --policy require-iommufd --cdi-dir ""
//
// Run it as a privileged DaemonSet with /var/lib/kubelet/device-plugins,
// /dev, /sys and /var/run/cdi mounted; bind the devices first (vfioctl
// bind --persist ADDRESS).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	api "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/vfioctl/vfioctl/cdi"
	"github.com/vfioctl/vfioctl/deviceplugin/plugin"
	"github.com/vfioctl/vfioctl/pci"
)

type resources []plugin.Resource

func (r *resources) String() string { return fmt.Sprint(*r) }
func (r *resources) Set(s string) error {
	res, err := plugin.ParseResource(s)
	if err != nil {
		return err
	}
	*r = append(*r, res)
	return nil
}

func main() {
	var rs resources
	flag.Var(&rs, "resource", "a resource and the vendor:device IDs it takes, NAME=VVVV:DDDD[,VVVV:DDDD] (repeatable; default: PREFIX/pci-VVVV_DDDD for each ID bound to vfio-pci)")
	prefix := flag.String("prefix", "vfioctl.dev", "the domain of the default resource names")
	policy := flag.String("policy", string(cdi.PreferIOMMUFD), "backend policy for every resource: prefer-iommufd, legacy, require-iommufd")
	cdiDir := flag.String("cdi-dir", "/var/run/cdi", "where the CDI specs are kept (\"\": none, and no CDI names in Allocate)")
	dir := flag.String("plugin-dir", api.DevicePluginPath, "the kubelet's device plugin directory")
	interval := flag.Duration("interval", 2*time.Second, "how often devices are rescanned")
	verbose := flag.Bool("v", false, "log each scan's changes at debug level")
	flag.Parse()
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "vfioctl-device-plugin: unexpected argument %q (flags only; -h lists them)\n", flag.Arg(0))
		os.Exit(2)
	}
	p, err := cdi.ParsePolicy(*policy)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vfioctl-device-plugin:", err)
		os.Exit(2)
	}
	if len(rs) == 0 {
		if rs, err = discover(*prefix); err != nil {
			fmt.Fprintln(os.Stderr, "vfioctl-device-plugin:", err)
			os.Exit(1)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var wg sync.WaitGroup
	errs := make(chan error, len(rs))
	for _, r := range rs {
		pl := &plugin.Plugin{Resource: r, Policy: p, CDIDir: *cdiDir, Dir: *dir, Interval: *interval, Log: log}
		log.Info("serving", "resource", r.Name, "ids", fmt.Sprint(r.Selectors), "policy", p)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := pl.Run(ctx); err != nil {
				errs <- fmt.Errorf("%s: %w", r.Name, err)
				stop()
			}
		}()
	}
	wg.Wait()
	close(errs)
	code := 0
	for err := range errs {
		fmt.Fprintln(os.Stderr, "vfioctl-device-plugin:", err)
		code = 1
	}
	os.Exit(code)
}

// discover makes a resource for each vendor:device ID bound to vfio-pci.
func discover(prefix string) (resources, error) {
	devs, err := pci.List()
	if err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	for _, d := range devs {
		if d.Driver == pci.VFIODriver {
			ids[fmt.Sprintf("%04x:%04x", d.Vendor, d.Device)] = true
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("no device is bound to vfio-pci and no --resource was given (vfioctl bind --persist ADDRESS)")
	}
	var keys []string
	for id := range ids {
		keys = append(keys, id)
	}
	sort.Strings(keys)
	var rs resources
	for _, id := range keys {
		r, err := plugin.ParseResource(prefix + "/pci-" + strings.ReplaceAll(id, ":", "_") + "=" + id)
		if err != nil {
			return nil, err
		}
		rs = append(rs, r)
	}
	return rs, nil
}
