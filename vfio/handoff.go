package vfio

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/internal/kernel"
	"github.com/vfioctl/vfioctl/ioasid"
)

// A privileged helper binds and opens a device, then hands the descriptors
// to an unprivileged VMM over a unix socket (SCM_RIGHTS), as libvirt and
// KubeVirt's device plugins do; the VMM rebuilds the same objects without
// opening a path. What travels: one message with a JSON header naming the
// backend and the facts a descriptor cannot tell (device name, group
// number, container IOMMU model, IOAS id, device id), and the descriptors.

const handoffVersion = 1

type handoff struct {
	Version int      `json:"version"`
	Backend string   `json:"backend"`
	Device  string   `json:"device"`
	FDs     []string `json:"fds"` // what each passed descriptor is, in order
	Group   int      `json:"group,omitempty"`
	IOMMU   int      `json:"iommu,omitempty"` // container model
	IOAS    uint32   `json:"ioas,omitempty"`  // cdev: the IOAS the device is attached to
	DevID   uint32   `json:"devid,omitempty"` // cdev: iommufd device id
	NoIOMMU bool     `json:"noiommu,omitempty"`
}

// Send hands h's descriptors to the process at the other end of conn
// (which calls Receive). h stays open and usable here; the receiver gets
// its own descriptors for the same kernel objects.
func (h *Handle) Send(conn *net.UnixConn) error {
	hdr := handoff{Version: handoffVersion, Backend: h.backend.String(), Device: h.device.Name(), DevID: h.devID, NoIOMMU: h.noIOMMU}
	var dupers []duper
	add := func(role string, d duper) {
		hdr.FDs = append(hdr.FDs, role)
		dupers = append(dupers, d)
	}
	add("device", h.device)
	h.space.mu.Lock()
	h.space.b.describe(&hdr, add)
	h.space.mu.Unlock()
	if h.group != nil {
		add("group", h.group)
		hdr.Group = h.group.ID()
	}
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for _, d := range dupers {
		fd, err := d.Dup()
		if err != nil {
			return err
		}
		fds = append(fds, fd)
	}
	msg, err := json.Marshal(hdr)
	if err != nil {
		return err
	}
	if _, _, err := conn.WriteMsgUnix(msg, unix.UnixRights(fds...), nil); err != nil {
		return kernel.Call{Op: "sendmsg", Object: conn.RemoteAddr().String(), Args: fmt.Sprintf("%d fds", len(fds))}.Fail(err)
	}
	return nil
}

// Receive rebuilds a Handle from what Send sent on conn. It opens no path,
// so it works in a process without access to /dev/vfio or /dev/iommu.
// Closing the received Handle closes its own descriptors only: the group
// stays attached, and the IOAS alive, for the sender.
func Receive(conn *net.UnixConn) (*Handle, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*8))
	var n, oobn int
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_CMSG_CLOEXEC)
		return rerr != unix.EAGAIN
	}); err != nil {
		return nil, err
	}
	if rerr != nil {
		return nil, kernel.Call{Op: "recvmsg", Object: "vfio handoff"}.Fail(rerr)
	}
	var fds []int
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, kernel.Call{Op: "recvmsg", Object: "vfio handoff"}.Fail(err)
	}
	for _, m := range msgs {
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			return nil, err
		}
		fds = append(fds, got...)
	}
	h, err := rebuild(buf[:n], fds)
	if err != nil {
		for _, fd := range fds {
			if fd >= 0 {
				unix.Close(fd)
			}
		}
		return nil, fmt.Errorf("vfio handoff: %w", err)
	}
	return h, nil
}

// rebuild makes the Handle; every fd it takes over is set to -1 in fds, so
// the caller closes only the rest on failure.
func rebuild(msg []byte, fds []int) (*Handle, error) {
	var hdr handoff
	if err := json.Unmarshal(msg, &hdr); err != nil {
		return nil, fmt.Errorf("malformed header: %w", err)
	}
	if hdr.Version != handoffVersion {
		return nil, fmt.Errorf("header version %d, want %d", hdr.Version, handoffVersion)
	}
	if len(hdr.FDs) != len(fds) {
		return nil, fmt.Errorf("header names %d descriptors, %d arrived", len(hdr.FDs), len(fds))
	}
	b, err := ParseBackend(hdr.Backend)
	if err != nil {
		return nil, err
	}
	impl, err := newBackend(b, hdr.NoIOMMU)
	if err != nil {
		return nil, err
	}
	h := &Handle{backend: b, space: &space{refs: 1, b: impl}, groupID: -1, devID: hdr.DevID, noIOMMU: hdr.NoIOMMU}
	deviceFD := -1
	var container *Container
	var iommufd *ioasid.FD
	var group *Group
	fail := func(err error) (*Handle, error) {
		if h.device == nil && deviceFD >= 0 {
			unix.Close(deviceFD)
		}
		if container != nil {
			container.Close()
		}
		if iommufd != nil {
			iommufd.Close()
		}
		if group != nil {
			group.Close()
		}
		if h.device != nil {
			h.device.Close()
		}
		return nil, err
	}
	for i, role := range hdr.FDs {
		fd := fds[i]
		fds[i] = -1
		switch role {
		case "device":
			deviceFD = fd
		case "container":
			if container, err = NewContainer(fd, IOMMUType(hdr.IOMMU)); err != nil {
				return fail(err)
			}
		case "group":
			if group, err = NewGroup(fd, hdr.Group); err != nil {
				return fail(err)
			}
		case "iommufd":
			if iommufd, err = ioasid.NewFD(fd); err != nil {
				return fail(err)
			}
		default:
			unix.Close(fd)
			return fail(fmt.Errorf("unknown descriptor role %q", role))
		}
	}
	if deviceFD < 0 {
		return fail(errors.New("no device descriptor"))
	}
	if h.device, err = NewDevice(deviceFD, hdr.Device); err != nil {
		return fail(err)
	}
	switch be := impl.(type) {
	case *containerBackend:
		if container == nil || group == nil {
			break
		}
		be.receive(container)
		be.adopt(h, group)
	case *spaprBackend:
		if container == nil || group == nil {
			break
		}
		err = be.receive(container)
		be.adopt(h, group)
	case *groupIOMMUFDBackend:
		if iommufd == nil || group == nil {
			break
		}
		err = be.receive(iommufd)
		be.adopt(h, group)
	case *cdevBackend:
		if iommufd == nil {
			break
		}
		err = be.receive(iommufd, hdr.IOAS)
	}
	if err != nil {
		return fail(err)
	}
	received := container != nil || iommufd != nil
	container, iommufd, group = nil, nil, nil // the backend owns them now
	if !received {
		return fail(fmt.Errorf("backend %s arrived without the descriptors it needs (%v)", b, hdr.FDs))
	}
	h.mapper = impl.mapper()
	impl.expose(h)
	return h, nil
}
