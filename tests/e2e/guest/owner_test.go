package guest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/vfioctl/vfioctl/pci"
	"github.com/vfioctl/vfioctl/vfio"
)

const nobody = 65534

// TestBindOwner: after a plain bind, a process running as nobody cannot
// open the edu's group node; after `vfioctl bind --owner 65534:65534`, the
// group node and the cdev belong to nobody (mode 0660) and the same
// process opens the edu through the legacy container and round-trips a
// DMA. /dev/iommu stays root's, so the cdev path needs an administrator's
// rule for it: the child reports what it found.
func TestBindOwner(t *testing.T) {
	if os.Getenv("VFIOCTL_OWNER_CHILD") != "" {
		ownerChild(os.Getenv("VFIOCTL_OWNER_CHILD"))
		return
	}
	addr := eduAddrs(t)[1]
	mustExit(t, 0, "unbind", addr)
	mustExit(t, 0, "bind", addr)
	if out, err := runAsNobody(addr); err == nil || !strings.Contains(out, "permission denied") {
		t.Fatalf("as nobody before --owner: %v\n%s", err, out)
	}
	mustExit(t, 0, "unbind", addr)
	var bound []pci.Bound
	if err := json.Unmarshal([]byte(mustExit(t, 0, "bind", "--owner", "65534:65534", "--json", addr)), &bound); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The next tests expect the edu as a plain bind leaves it.
		mustExit(t, 0, "unbind", addr)
		mustExit(t, 0, "bind", addr)
	})
	if len(bound) != 1 || bound[0].Owner == nil || *bound[0].Owner != (pci.Owner{UID: nobody, GID: nobody}) {
		t.Fatalf("bind --owner: %+v", bound)
	}
	nodes := []string{bound[0].GroupNode}
	if bound[0].Cdev != "" {
		nodes = append(nodes, bound[0].Cdev)
	}
	for _, n := range nodes {
		var st syscall.Stat_t
		if err := syscall.Stat(n, &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != nobody || st.Gid != nobody || st.Mode&0o777 != 0o660 {
			t.Errorf("%s: owner %d:%d mode %o, want 65534:65534 0660", n, st.Uid, st.Gid, st.Mode&0o777)
		}
	}
	out, err := runAsNobody(addr)
	if err != nil {
		t.Fatalf("as nobody after --owner: %v\n%s", err, out)
	}
	t.Logf("child (nobody): %s", strings.ReplaceAll(strings.TrimSpace(out), "\n", "; "))
	if bound[0].Cdev != "" && !strings.Contains(out, "cdev opens") {
		t.Errorf("the child could not open the cdev %s:\n%s", bound[0].Cdev, out)
	}
	// A malformed owner is a usage error.
	mustExit(t, 0, "unbind", addr)
	mustExit(t, 2, "bind", "--owner", "nosuchuser", addr)
	mustExit(t, 0, "bind", addr)
}

// runAsNobody runs this test binary's child mode as uid/gid 65534.
func runAsNobody(addr string) (string, error) {
	exe, _ := os.Executable()
	cmd := exec.Command(exe, "-test.run=^TestBindOwner$")
	cmd.Env = append(os.Environ(), "VFIOCTL_OWNER_CHILD="+addr)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// ownerChild opens the edu by path as an unprivileged user and DMAs.
func ownerChild(addr string) {
	fail := func(f string, a ...any) { fmt.Printf("FAIL: "+f+"\n", a...); os.Exit(1) }
	if os.Getuid() != nobody {
		fail("the child runs as uid %d", os.Getuid())
	}
	d, err := pci.Get(addr)
	if err != nil {
		fail("%v", err)
	}
	if d.VFIOCdev != "" {
		if f, err := os.OpenFile(d.VFIOCdev, os.O_RDWR, 0); err == nil {
			fmt.Println("cdev opens")
			f.Close()
		} else {
			fmt.Printf("cdev: %v\n", err)
		}
		if _, err := os.OpenFile("/dev/iommu", os.O_RDWR, 0); errors.Is(err, os.ErrPermission) {
			fmt.Println("/dev/iommu is root's: the cdev path needs a rule granting it")
		}
	}
	h, err := vfio.Open(addr, &vfio.Options{Backend: vfio.Legacy}) // the best model: type1v2, or SPAPR TCE v2 on POWER
	if err != nil {
		fail("open: %v", err)
	}
	defer h.Close()
	childRoundtrip(h, fail)
	fmt.Println("legacy container: DMA round trip ok")
	os.Exit(0)
}
