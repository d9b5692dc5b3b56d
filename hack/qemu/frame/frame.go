// Package frame is the contract between the e2e guest's init and the host:
// where the manifest lives, and the marker lines that frame each command's
// output on the results port.
package frame

import "time"

const (
	ManifestPath = "/vfioctl/manifest.json"
	// ModulesDir holds the kernel modules the init loads before any
	// command (the Linux 6.1 guest's mdev samples).
	ModulesDir = "/vfioctl/modules"
	Port       = "/dev/ttyS1" // the second serial port: results only
	// PortParam on the kernel command line names another results port
	// (vfioctl.port=/dev/hvc0), for machines with one serial port.
	PortParam = "vfioctl.port"
	// GuestEnv is set to 1 in every command the guest runs, so tests know
	// they are inside the e2e VM.
	GuestEnv = "VFIOCTL_GUEST"

	// Kernel is the first line init writes: "Kernel RELEASE VERSION"
	// (uname -r and -v), so every boot's results name the kernel they ran
	// on, and the host starts the boot's clock at it.
	Kernel = "@@@vfioctl-kernel"
	Begin  = "@@@vfioctl-begin"
	End    = "@@@vfioctl-end"
	Done   = "@@@vfioctl-done"
	Fatal  = "@@@vfioctl-fatal"
)

// Manifest lists what the guest runs, in order.
type Manifest struct {
	Env      []string
	Commands []Command
}

// Command is one program run as root in the guest.
type Command struct {
	Name    string
	Argv    []string
	Env     []string
	Timeout time.Duration
}
