// Package kubelettest is the kubelet's side of the device plugin API, on
// the kubelet's own API package, for tests: a registration server on a
// real unix socket that follows each registered plugin's ListAndWatch and
// calls its Allocate.
package kubelettest

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	api "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// Kubelet is the kubelet's side of the device plugin API, on the same
// API package: a registration server on DIR/kubelet.sock which, for each
// registration, dials the plugin's endpoint and follows its ListAndWatch.
type Kubelet struct {
	t       *testing.T
	dir     string
	srv     *grpc.Server
	regs    chan *api.RegisterRequest
	updates chan []*api.Device
	mu      sync.Mutex
	client  api.DevicePluginClient
	api.UnimplementedRegistrationServer
}

// Start serves the registration API on DIR/kubelet.sock.
func Start(t *testing.T, dir string) *Kubelet {
	k := &Kubelet{t: t, dir: dir, regs: make(chan *api.RegisterRequest, 4), updates: make(chan []*api.Device, 16)}
	l, err := net.Listen("unix", filepath.Join(dir, "kubelet.sock"))
	if err != nil {
		t.Fatal(err)
	}
	k.srv = grpc.NewServer()
	api.RegisterRegistrationServer(k.srv, k)
	go func() { _ = k.srv.Serve(l) }()
	return k
}

// Restart does to DIR what a kubelet restart does.
func (k *Kubelet) Restart() *Kubelet {
	k.srv.Stop()
	ents, _ := os.ReadDir(k.dir)
	for _, e := range ents {
		_ = os.Remove(filepath.Join(k.dir, e.Name()))
	}
	return Start(k.t, k.dir)
}

// Register implements the kubelet's registration service: it dials the
// plugin, asks its options and follows its ListAndWatch.
func (k *Kubelet) Register(_ context.Context, r *api.RegisterRequest) (*api.Empty, error) {
	conn, err := grpc.NewClient("unix://"+filepath.Join(k.dir, r.Endpoint), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	c := api.NewDevicePluginClient(conn)
	if _, err := c.GetDevicePluginOptions(context.Background(), &api.Empty{}); err != nil {
		return nil, err
	}
	stream, err := c.ListAndWatch(context.Background(), &api.Empty{})
	if err != nil {
		return nil, err
	}
	go func() {
		defer conn.Close()
		for {
			r, err := stream.Recv()
			if err != nil {
				return
			}
			k.updates <- r.Devices
		}
	}()
	k.mu.Lock()
	k.client = c
	k.mu.Unlock()
	k.regs <- r
	return &api.Empty{}, nil
}

// Allocate asks the registered plugin for one container's devices.
func (k *Kubelet) Allocate(ids ...string) (*api.AllocateResponse, error) {
	k.mu.Lock()
	c := k.client
	k.mu.Unlock()
	return c.Allocate(context.Background(), &api.AllocateRequest{ContainerRequests: []*api.ContainerAllocateRequest{{DevicesIds: ids}}})
}

// Registration waits for the next registration.
func (k *Kubelet) Registration() *api.RegisterRequest {
	select {
	case r := <-k.regs:
		return r
	case <-time.After(10 * time.Second):
		k.t.Fatal("the plugin did not register")
		return nil
	}
}

// WaitFor reads ListAndWatch updates until one has the wanted health per
// device.
func (k *Kubelet) WaitFor(want map[string]string) []*api.Device {
	deadline := time.After(10 * time.Second)
	var last []*api.Device
	for {
		select {
		case devs := <-k.updates:
			last = devs
			got := map[string]string{}
			for _, d := range devs {
				got[d.ID] = d.Health
			}
			if reflect.DeepEqual(got, want) {
				return devs
			}
		case <-deadline:
			k.t.Fatalf("ListAndWatch never reported %v; last %v", want, last)
		}
	}
}

// Stop stops serving.
func (k *Kubelet) Stop() { k.srv.Stop() }
