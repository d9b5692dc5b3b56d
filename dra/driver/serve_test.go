package driver

import (
	"context"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	drapb "k8s.io/kubelet/pkg/apis/dra/v1"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"github.com/vfioctl/vfioctl/dra/internal/kubelettest"
)

// TestServe runs the driver as the kubelet meets it: the kubeletplugin
// helper on real unix sockets, a fake kubelet speaking the real
// registration and DRA v1 APIs to them, and a fake API server
// (client-go's fake clientset) holding the node, the claims and the
// ResourceSlices the driver writes.
func TestServe(t *testing.T) {
	h := newFakeHost()
	d := newDriver(t, h, t.TempDir())
	client := fake.NewSimpleClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1", UID: "node1-uid"}})
	k, ctx := kubelettest.Serve(t, func(ctx context.Context, opts ...kubeletplugin.Option) error {
		return d.Serve(ctx, client, 50*time.Millisecond, opts...)
	})

	if k.Info.Type != registerapi.DRAPlugin || k.Info.Name != DefaultName || !slices.Contains(k.Info.SupportedVersions, drapb.DRAPluginService) {
		t.Errorf("registration info: %+v", k.Info)
	}
	// The slice: the node's pool with the devices the selection picks.
	slice := kubelettest.WaitSlice(t, client, func(s *resourceapi.ResourceSlice) bool { return len(s.Spec.Devices) == 4 })
	if s := slice.Spec; s.Driver != DefaultName || s.Pool.Name != "node1" || s.NodeName == nil || *s.NodeName != "node1" {
		t.Errorf("slice spec: %+v", s)
	}
	// A device leaves (removed from the host): the slice follows.
	h.remove("0000:00:04.0")
	kubelettest.WaitSlice(t, client, func(s *resourceapi.ResourceSlice) bool { return len(s.Spec.Devices) == 3 })

	// Prepare and unprepare through the DRA service.
	c := claim("uid-7", "vm", []string{"pci-0000-00-03-0"})
	if _, err := client.ResourceV1().ResourceClaims("default").Create(ctx, c, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	devs, err := k.Prepare(ctx, "default", "vm", "uid-7")
	if err != nil || len(devs) != 1 || devs[0].DeviceName != "pci-0000-00-03-0" || len(devs[0].CdiDeviceIds) != 1 {
		t.Fatalf("NodePrepareResources: %+v, %v", devs, err)
	}
	if h.driver("0000:00:03.0") != "vfio-pci" {
		t.Error("prepare did not bind the device")
	}
	if err := k.Unprepare(ctx, "default", "vm", "uid-7"); err != nil {
		t.Fatal(err)
	}
	if h.driver("0000:00:03.0") != "" {
		t.Error("unprepare did not give the device back")
	}
}
