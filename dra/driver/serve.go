package driver

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
)

// Serve registers the driver with the kubelet (kubeletplugin.Start: the
// registration and DRA gRPC services on their unix sockets), publishes the
// node's ResourceSlice through client and publishes again whenever what it
// would publish changes (the host rescanned every interval: a device
// unbound, removed, rescanned or added by SR-IOV), until ctx ends or a
// fatal error (HandleError) stops it. opts add to or replace the helper's
// options (socket directories, in tests).
func (d *Driver) Serve(ctx context.Context, client kubernetes.Interface, interval time.Duration, opts ...kubeletplugin.Option) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var fatal error
	var mu sync.Mutex
	d.fatal = func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if fatal == nil {
			fatal = err
		}
		cancel()
	}
	base := []kubeletplugin.Option{kubeletplugin.DriverName(d.opts.Name), kubeletplugin.NodeName(d.opts.NodeName), kubeletplugin.KubeClient(client)}
	helper, err := kubeletplugin.Start(ctx, d, append(base, opts...)...)
	if err != nil {
		return err
	}
	defer helper.Stop()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var last []byte
	for {
		res, pub, err := d.Resources()
		if err != nil {
			d.log.Warn("scan (tried again at the next interval)", "err", err) // sysfs changing under the scan
		} else if now, _ := json.Marshal(res); string(now) != string(last) {
			if err := helper.PublishResources(ctx, res); err != nil {
				if ctx.Err() == nil {
					d.log.Error("publish", "err", err)
				}
			} else {
				last = now
				names := make([]string, 0, len(pub))
				for _, p := range pub {
					names = append(names, p.Name)
				}
				d.log.Info("published", "devices", names)
			}
		}
		select {
		case <-ctx.Done():
			mu.Lock()
			defer mu.Unlock()
			return fatal // nil when the caller ended it
		case <-tick.C:
		}
	}
}
