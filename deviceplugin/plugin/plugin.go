package plugin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	api "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/vfioctl/vfioctl/cdi"
)

// Plugin serves one resource to the kubelet. Set the fields, then Run.
type Plugin struct {
	Resource Resource
	// Source lists the devices (default: a SysfsSource of Resource).
	Source Source
	// Policy chooses the backend for the whole resource (default
	// cdi.PreferIOMMUFD).
	Policy cdi.Policy
	// Nodes gives the device nodes of healthy devices under a policy
	// (default cdi.Nodes, which reads sysfs and /dev).
	Nodes func(addrs []string, p cdi.Policy) (*cdi.NodeSet, error)
	// CDIDir, when set, is where the resource's CDI spec is kept current
	// (e.g. /var/run/cdi); Allocate then names the CDI devices too.
	CDIDir string
	// Dir is the kubelet's plugin directory, holding kubelet.sock (default
	// /var/lib/kubelet/device-plugins).
	Dir string
	// Interval between scans of the devices and checks of the socket
	// (default 2 s).
	Interval time.Duration
	Log      *slog.Logger

	mu      sync.Mutex
	devices []State
	nodes   *cdi.NodeSet
	changed chan struct{} // closed, and replaced, when devices change
}

func (p *Plugin) defaults() {
	if p.Source == nil {
		p.Source = &SysfsSource{Resource: p.Resource}
	}
	if p.Policy == "" {
		p.Policy = cdi.PreferIOMMUFD
	}
	if p.Nodes == nil {
		p.Nodes = cdi.Nodes
	}
	if p.Dir == "" {
		p.Dir = api.DevicePluginPath
	}
	if p.Interval == 0 {
		p.Interval = 2 * time.Second
	}
	if p.Log == nil {
		p.Log = slog.Default()
	}
	if p.changed == nil {
		p.changed = make(chan struct{})
	}
}

// Socket is the path of the plugin's own socket.
func (p *Plugin) Socket() string { return filepath.Join(p.Dir, p.Resource.socketName()) }

// Run serves and registers until ctx ends, serving and registering again
// whenever the kubelet restarts. It returns nil when ctx ends, or the
// error that stopped it.
func (p *Plugin) Run(ctx context.Context) error {
	p.defaults()
	log := p.Log.With("resource", p.Resource.Name)
	if err := p.refresh(); err != nil {
		return err
	}
	for {
		srv, err := p.serve()
		if err != nil {
			return err
		}
		if err := p.register(ctx); err != nil {
			srv.Stop()
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		log.Info("registered with the kubelet", "socket", p.Socket(), "devices", len(p.snapshot()))
		restart := p.watch(ctx)
		srv.Stop()
		if !restart {
			_ = os.Remove(p.Socket())
			return nil
		}
		log.Info("the kubelet restarted (it removed our socket): serving and registering again")
	}
}

// serve listens on the plugin's socket (replacing a stale one).
func (p *Plugin) serve() (*grpc.Server, error) {
	if err := os.Remove(p.Socket()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	l, err := net.Listen("unix", p.Socket())
	if err != nil {
		return nil, fmt.Errorf("plugin: %w", err)
	}
	srv := grpc.NewServer()
	api.RegisterDevicePluginServer(srv, &server{p: p})
	go func() { _ = srv.Serve(l) }()
	return srv, nil
}

// register tells the kubelet about the plugin, retrying each interval
// while the kubelet is not there yet.
func (p *Plugin) register(ctx context.Context) error {
	for {
		err := p.registerOnce(ctx)
		if err == nil {
			return nil
		}
		p.Log.Warn("registration with the kubelet failed; retrying", "resource", p.Resource.Name, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(p.Interval):
		}
	}
}

func (p *Plugin) registerOnce(ctx context.Context) error {
	conn, err := grpc.NewClient("unix://"+filepath.Join(p.Dir, filepath.Base(api.KubeletSocket)),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = api.NewRegistrationClient(conn).Register(ctx, &api.RegisterRequest{
		Version:      api.Version,
		Endpoint:     p.Resource.socketName(),
		ResourceName: p.Resource.Name,
		Options:      &api.DevicePluginOptions{},
	})
	return err
}

// watch rescans the devices each interval until ctx ends (false) or the
// plugin's socket disappears, as when the kubelet restarts (true).
func (p *Plugin) watch(ctx context.Context) bool {
	t := time.NewTicker(p.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
		if _, err := os.Stat(p.Socket()); errors.Is(err, os.ErrNotExist) {
			return true
		}
		if err := p.refresh(); err != nil {
			p.Log.Warn("scanning the devices", "resource", p.Resource.Name, "err", err)
		}
	}
}

// refresh scans the devices, chooses the nodes of the healthy ones, keeps
// the CDI spec current, and wakes ListAndWatch when anything changed.
func (p *Plugin) refresh() error {
	devs, err := p.Source.Scan()
	if err != nil {
		return err
	}
	var healthy []string
	for _, d := range devs {
		if d.Healthy {
			healthy = append(healthy, d.Address)
		}
	}
	var ns *cdi.NodeSet
	if len(healthy) > 0 {
		if ns, err = p.Nodes(healthy, p.Policy); err != nil {
			// The policy cannot serve the set (require-iommufd without
			// cdevs): no device can be handed out.
			for i := range devs {
				if devs[i].Healthy {
					devs[i].Healthy, devs[i].Why = false, err.Error()
				}
			}
			ns = nil
		}
	}
	p.mu.Lock()
	same := reflect.DeepEqual(devs, p.devices) && reflect.DeepEqual(ns, p.nodes)
	p.mu.Unlock()
	if same {
		return nil
	}
	for _, d := range devs {
		if !d.Healthy {
			p.Log.Warn("device unhealthy", "resource", p.Resource.Name, "device", d.Address, "why", d.Why)
		}
	}
	// The spec first: a device the kubelet hears of can be resolved.
	if err := p.writeSpec(ns); err != nil {
		return err
	}
	p.mu.Lock()
	p.devices, p.nodes = devs, ns
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
	return nil
}

// writeSpec keeps the resource's CDI spec naming its healthy devices (and
// deletes it when there are none).
func (p *Plugin) writeSpec(ns *cdi.NodeSet) error {
	if p.CDIDir == "" {
		return nil
	}
	if ns == nil {
		return cdi.Remove(p.Resource.CDIKind(), p.CDIDir)
	}
	spec, err := cdi.Spec(ns, p.Resource.CDIKind())
	if err != nil {
		return err
	}
	path, err := cdi.Write(spec, p.CDIDir)
	if err != nil {
		return err
	}
	p.Log.Debug("CDI spec written", "resource", p.Resource.Name, "path", path, "backend", ns.Backend)
	return nil
}

func (p *Plugin) snapshot() []State {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.devices
}

// server is the gRPC face of a Plugin.
type server struct {
	api.UnimplementedDevicePluginServer
	p *Plugin
}

func (s *server) GetDevicePluginOptions(context.Context, *api.Empty) (*api.DevicePluginOptions, error) {
	return &api.DevicePluginOptions{}, nil
}

func (s *server) ListAndWatch(_ *api.Empty, stream grpc.ServerStreamingServer[api.ListAndWatchResponse]) error {
	for {
		s.p.mu.Lock()
		devs, changed := s.p.devices, s.p.changed
		s.p.mu.Unlock()
		resp := &api.ListAndWatchResponse{}
		for _, d := range devs {
			ad := &api.Device{ID: d.Address, Health: api.Healthy}
			if !d.Healthy {
				ad.Health = api.Unhealthy
			}
			if d.NUMA >= 0 {
				ad.Topology = &api.TopologyInfo{Nodes: []*api.NUMANode{{ID: int64(d.NUMA)}}}
			}
			resp.Devices = append(resp.Devices, ad)
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-changed:
		}
	}
}

// Allocate gives each container the nodes of its devices under the
// resource's one backend, their CDI names, and their addresses.
func (s *server) Allocate(_ context.Context, req *api.AllocateRequest) (*api.AllocateResponse, error) {
	s.p.mu.Lock()
	devs, ns := s.p.devices, s.p.nodes
	s.p.mu.Unlock()
	state := map[string]State{}
	for _, d := range devs {
		state[d.Address] = d
	}
	nodesOf := map[string][]string{}
	if ns != nil {
		for _, d := range ns.Devices {
			nodesOf[d.Address] = d.Nodes
		}
	}
	resp := &api.AllocateResponse{}
	for _, cr := range req.ContainerRequests {
		ids := append([]string(nil), cr.DevicesIds...)
		sort.Strings(ids)
		if len(ids) == 0 {
			return nil, status.Errorf(codes.InvalidArgument, "%s: a container request with no devices", s.p.Resource.Name)
		}
		car := &api.ContainerAllocateResponse{Envs: map[string]string{}}
		for _, id := range ids {
			st, ok := state[id]
			switch {
			case !ok:
				return nil, status.Errorf(codes.InvalidArgument, "%s: no device %q", s.p.Resource.Name, id)
			case !st.Healthy:
				return nil, status.Errorf(codes.FailedPrecondition, "%s: device %s is unhealthy: %s", s.p.Resource.Name, id, st.Why)
			case nodesOf[id] == nil:
				return nil, status.Errorf(codes.Unavailable, "%s: device %s: no nodes yet", s.p.Resource.Name, id)
			}
		}
		for _, n := range ns.Shared {
			car.Devices = append(car.Devices, &api.DeviceSpec{ContainerPath: n, HostPath: n, Permissions: "rw"})
		}
		for _, id := range ids {
			for _, n := range nodesOf[id] {
				car.Devices = append(car.Devices, &api.DeviceSpec{ContainerPath: n, HostPath: n, Permissions: "rw"})
			}
			if s.p.CDIDir != "" {
				car.CdiDevices = append(car.CdiDevices, &api.CDIDevice{Name: cdi.Name(s.p.Resource.CDIKind(), id)})
			}
		}
		car.Envs[s.p.Resource.EnvName()] = strings.Join(ids, ",")
		car.Envs["VFIOCTL_BACKEND"] = ns.Backend
		resp.ContainerResponses = append(resp.ContainerResponses, car)
	}
	return resp, nil
}

func (s *server) PreStartContainer(context.Context, *api.PreStartContainerRequest) (*api.PreStartContainerResponse, error) {
	return &api.PreStartContainerResponse{}, nil
}
