// Package qemu is vfioctl's e2e harness: it builds the guest kernels
// (kernel.sh, cached by version and config hash), packs a Go init, the test
// binaries and busybox into an initramfs, boots QEMU q35 with a vIOMMU
// profile (intel, amd, virtio) and two edu devices, an e1000e and an nvme,
// and reports each guest test as a host subtest.
//
// One boot per (kernel, profile) runs every guest package; the guest's
// results travel on the second serial port, framed per command, while the
// kernel console goes to a log kept when anything fails. KVM is used only
// where a probe guest booted under it reaches userspace (Accel), TCG
// otherwise; a boot whose init says nothing within NoProgressTimeout is
// reported as making no progress instead of waiting out its timeout. A
// boot whose machine failed (its kernel reports an RCU stall, a vCPU that
// stopped; or QEMU itself dies of a fault such as SIGSEGV) is booted again
// once by Run, which says so and keeps the failed boot's logs.
//
//	qemu.Run(t, qemu.Spec{Kernel: "legacy", Profile: "intel", Packages: []string{"./tests/e2e/guest"}})
package qemu
