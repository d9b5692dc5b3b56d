// Package kubelettest is the kubelet's side of a DRA driver, for tests: it
// finds the driver's registration socket, registers it as the kubelet's
// plugin watcher does (GetInfo, NotifyRegistrationStatus) and calls the
// DRA v1 service at the endpoint the driver gave, over real unix sockets.
package kubelettest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	drapb "k8s.io/kubelet/pkg/apis/dra/v1"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// Kubelet is one registered driver.
type Kubelet struct {
	Info  *registerapi.PluginInfo
	DRA   drapb.DRAPluginClient
	conns []*grpc.ClientConn
}

// ShortDir is a temporary directory short enough for unix socket paths
// (108 bytes), removed by the returned function.
func ShortDir() (string, func(), error) {
	dir, err := os.MkdirTemp("", "dra")
	return dir, func() { os.RemoveAll(dir) }, err
}

// Register waits up to timeout for a registration socket in dir and
// registers the driver behind it.
func Register(ctx context.Context, dir string, timeout time.Duration) (*Kubelet, error) {
	var sock string
	for deadline := time.Now().Add(timeout); sock == ""; time.Sleep(20 * time.Millisecond) {
		if m, _ := filepath.Glob(filepath.Join(dir, "*.sock")); len(m) > 0 {
			sock = m[0]
		} else if time.Now().After(deadline) {
			return nil, fmt.Errorf("no registration socket in %s after %v", dir, timeout)
		}
	}
	k := &Kubelet{}
	rc, err := k.dial(sock)
	if err != nil {
		return nil, err
	}
	reg := registerapi.NewRegistrationClient(rc)
	if k.Info, err = reg.GetInfo(ctx, &registerapi.InfoRequest{}); err != nil {
		k.Close()
		return nil, fmt.Errorf("GetInfo: %w", err)
	}
	if _, err := reg.NotifyRegistrationStatus(ctx, &registerapi.RegistrationStatus{PluginRegistered: true}); err != nil {
		k.Close()
		return nil, fmt.Errorf("NotifyRegistrationStatus: %w", err)
	}
	dc, err := k.dial(k.Info.Endpoint)
	if err != nil {
		k.Close()
		return nil, err
	}
	k.DRA = drapb.NewDRAPluginClient(dc)
	return k, nil
}

func (k *Kubelet) dial(path string) (*grpc.ClientConn, error) {
	cc, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	k.conns = append(k.conns, cc)
	return cc, nil
}

// Prepare is NodePrepareResources for one claim: its devices, or the
// error the driver reported for it.
func (k *Kubelet) Prepare(ctx context.Context, namespace, name, uid string) ([]*drapb.Device, error) {
	r, err := k.DRA.NodePrepareResources(ctx, &drapb.NodePrepareResourcesRequest{Claims: []*drapb.Claim{{Namespace: namespace, Name: name, Uid: uid}}})
	if err != nil {
		return nil, err
	}
	c := r.Claims[uid]
	switch {
	case c == nil:
		return nil, fmt.Errorf("no answer for claim %s", uid)
	case c.Error != "":
		return nil, fmt.Errorf("%s", c.Error)
	}
	return c.Devices, nil
}

// Unprepare is NodeUnprepareResources for one claim.
func (k *Kubelet) Unprepare(ctx context.Context, namespace, name, uid string) error {
	r, err := k.DRA.NodeUnprepareResources(ctx, &drapb.NodeUnprepareResourcesRequest{Claims: []*drapb.Claim{{Namespace: namespace, Name: name, Uid: uid}}})
	if err != nil {
		return err
	}
	c := r.Claims[uid]
	switch {
	case c == nil:
		return fmt.Errorf("no answer for claim %s", uid)
	case c.Error != "":
		return fmt.Errorf("%s", c.Error)
	}
	return nil
}

// Close drops the connections.
func (k *Kubelet) Close() {
	for _, c := range k.conns {
		c.Close()
	}
}

// Serve runs serve (a driver's Serve, given the helper's socket options)
// until the test ends, and returns the kubelet registered with it and the
// context it runs under. A Serve that ends in an error fails the test.
func Serve(t testing.TB, serve func(ctx context.Context, opts ...kubeletplugin.Option) error) (*Kubelet, context.Context) {
	t.Helper()
	reg, rmReg, err := ShortDir()
	if err != nil {
		t.Fatal(err)
	}
	plug, rmPlug, err := ShortDir()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, kubeletplugin.RegistrarDirectoryPath(reg), kubeletplugin.PluginDataDirectoryPath(plug))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		rmReg()
		rmPlug()
	})
	k, err := Register(ctx, reg, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	return k, ctx
}

// WaitSlice waits up to 10 s for the driver's one ResourceSlice to satisfy
// ok, and returns it.
func WaitSlice(t testing.TB, client kubernetes.Interface, ok func(*resourceapi.ResourceSlice) bool) *resourceapi.ResourceSlice {
	t.Helper()
	var last []resourceapi.ResourceSlice
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		l, err := client.ResourceV1().ResourceSlices().List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		last = l.Items
		if len(l.Items) == 1 && ok(&l.Items[0]) {
			return &l.Items[0]
		}
	}
	t.Fatalf("the ResourceSlices never became what was expected: %+v", last)
	return nil
}
