// Package vfioerr is the error vocabulary shared by every vfioctl package:
// the sentinels callers branch on and the error types that carry the
// details. vfio, ioasid and pci return these (wrapped or as they are), so
// one errors.Is or errors.As works whichever package an error came from:
//
//	errors.Is(err, unix.EBUSY)               // the errno behind an OpError
//	errors.Is(err, vfioerr.ErrClosed)        // use of an object after Close
//	errors.Is(err, vfioerr.ErrNotSupported)  // the running kernel lacks it
//	var ns *vfioerr.NotSupportedError        // ... and which Linux added it
//	var nv *vfioerr.GroupNotViableError      // which devices block a group
//	var op *vfioerr.OpError                  // the ioctl, its object and arguments
//
// Each sentinel has one exported name, here. Every failed system call of
// vfio, ioasid and dma becomes an OpError in one place, where it fails,
// with the hint its errno has for that operation. nvme, pci and cdi use
// these types for what the kernel refuses, and say in their package docs
// which errors of theirs are different (an NVMe status is the device's
// answer, not an errno).
//
// Messages state facts about the system: what failed, on what, with which
// arguments, and what the kernel or hardware is missing. Advice about a
// particular program's flags belongs to that program.
package vfioerr
