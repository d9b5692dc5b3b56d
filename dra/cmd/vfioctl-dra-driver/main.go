// Command vfioctl-dra-driver is a Dynamic Resource Allocation kubelet
// plugin for VFIO devices (driver vfio.vfioctl.dev): it publishes the
// node's VFIO-capable PCI functions in a ResourceSlice, binds a claim's
// devices to vfio-pci when a pod needs them, hands the pod their CDI
// devices and gives them back when the pod is gone.
//
//	vfioctl-dra-driver --node-name $NODE_NAME --select 1234:11e8           edus
//	vfioctl-dra-driver --node-name $NODE_NAME --select class=0108,class=02 NVMe drives and NICs
//	vfioctl-dra-driver --node-name $NODE_NAME --select addr=0000:03:00.0 --backend require-iommufd --owner 107:107
//
// Run it as a privileged DaemonSet (docs/dra/) with /sys, /dev,
// /var/lib/kubelet/plugins, /var/lib/kubelet/plugins_registry and
// /var/run/cdi mounted, and RBAC to read ResourceClaims and write
// ResourceSlices.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"

	"github.com/vfioctl/vfioctl/cdi"
	"github.com/vfioctl/vfioctl/dra/driver"
	"github.com/vfioctl/vfioctl/pci"
)

func main() {
	name := flag.String("driver-name", driver.DefaultName, "the DRA driver name DeviceClasses select")
	node := flag.String("node-name", os.Getenv("NODE_NAME"), "this node's name (default $NODE_NAME): the pool the devices are published in")
	sel := flag.String("select", "", "what to publish: vendor:device (1234:11e8), class=HEX (0108) or addr=ADDRESS, comma-separated")
	backend := flag.String("backend", string(cdi.PreferIOMMUFD), "the default backend policy of a claim (legacy, prefer-iommufd, require-iommufd); a class's or claim's config overrides it")
	owner := flag.String("owner", "", "UID:GID given the VFIO nodes of prepared devices by default (an unprivileged VMM)")
	state := flag.String("state-dir", "/var/lib/vfioctl-dra", "checkpoints of prepared claims")
	cdiDir := flag.String("cdi-dir", "/var/run/cdi", "where the claims' CDI specs go")
	registrar := flag.String("registrar-dir", "/var/lib/kubelet/plugins_registry", "the kubelet's plugin registration directory")
	plugins := flag.String("plugin-dir", "", "the driver's socket directory (default /var/lib/kubelet/plugins/DRIVER-NAME)")
	kubeconfig := flag.String("kubeconfig", "", "a kubeconfig (default: the in-cluster service account)")
	interval := flag.Duration("interval", 10*time.Second, "how often the node's devices are rescanned")
	verbose := flag.Bool("v", false, "debug logs (why each picked function is not published)")
	flag.Usage = func() {
		fmt.Fprint(flag.CommandLine.Output(), `vfioctl-dra-driver: a DRA kubelet plugin for VFIO devices (driver vfio.vfioctl.dev)

Publishes the PCI functions --select picks in this node's ResourceSlice, binds
a claim's devices to vfio-pci when a pod needs them, writes one CDI spec per
claim and gives the devices back to their drivers when the pod is gone.

Examples:
  vfioctl-dra-driver --node-name "$NODE_NAME" --select 1234:11e8
  vfioctl-dra-driver --node-name "$NODE_NAME" --select class=0108,class=02
  vfioctl-dra-driver --node-name "$NODE_NAME" --select addr=0000:03:00.0 --backend require-iommufd --owner 107:107
  vfioctl-dra-driver --kubeconfig ~/.kube/config --node-name node1 --select class=0108 -v   outside a cluster

Exit status: 0 stopped by a signal, 1 a fatal error while serving, 2 bad flags.

Flags:
`)
		flag.PrintDefaults()
	}
	flag.Parse()
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	usage := func(err error) {
		fmt.Fprintln(os.Stderr, "vfioctl-dra-driver:", err)
		os.Exit(2)
	}
	if flag.NArg() > 0 {
		usage(fmt.Errorf("unexpected argument %q (flags only; -h lists them)", flag.Arg(0)))
	}
	if *node == "" {
		usage(fmt.Errorf("--node-name (or $NODE_NAME) is required"))
	}
	selection, err := driver.ParseSelection(*sel)
	if err != nil {
		usage(err)
	}
	def := driver.Config{}
	if def.Policy, err = cdi.ParsePolicy(*backend); err != nil {
		usage(err)
	}
	if *owner != "" {
		o, err := pci.ParseOwner(*owner)
		if err != nil {
			usage(err)
		}
		def.Owner = &o
	}
	if *plugins == "" {
		*plugins = filepath.Join("/var/lib/kubelet/plugins", *name)
	}
	cfg, err := rest.InClusterConfig()
	if *kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", *kubeconfig)
	}
	if err != nil {
		usage(fmt.Errorf("no API server to publish to: %w (give --kubeconfig outside a cluster)", err))
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		usage(err)
	}
	d, err := driver.New(driver.Options{Name: *name, NodeName: *node, Selection: selection, StateDir: *state, CDIDir: *cdiDir, Default: def, Logger: log}, driver.SysfsHost{})
	if err != nil {
		usage(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log.Info("serving", "driver", *name, "node", *node, "select", *sel, "backend", def.Policy)
	if err := d.Serve(ctx, client, *interval, kubeletplugin.RegistrarDirectoryPath(*registrar), kubeletplugin.PluginDataDirectoryPath(*plugins)); err != nil {
		fmt.Fprintln(os.Stderr, "vfioctl-dra-driver:", err)
		os.Exit(1)
	}
}
