package uapi

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctlPtr is the one place a pointer argument meets the system call. It
// stays an unsafe.Pointer until the call expression itself, the only place
// package unsafe allows converting it to a uintptr (rule 4): the compiler
// then keeps the object alive and where it is for the length of the call,
// even when it lives on a goroutine stack that might otherwise move.
func ioctlPtr(fd int, req uint, arg unsafe.Pointer) (uintptr, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(arg))
	if errno != 0 {
		return r, errno
	}
	return r, nil
}

// ioctlValue is an ioctl whose argument is an integer, not a pointer.
func ioctlValue(fd int, req uint, arg uintptr) (uintptr, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), arg)
	if errno != 0 {
		return r, errno
	}
	return r, nil
}
