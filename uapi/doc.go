// Package uapi is the one place in vfioctl that knows the Linux VFIO and
// iommufd ABI: struct layouts, constants and ioctl numbers of
// include/uapi/linux/vfio.h and include/uapi/linux/iommufd.h, and one typed
// function per ioctl that issues it. Nothing else.
//
// # Generated, then checked
//
// zvfio_linux.go and ziommufd_linux.go are generated (go generate ./uapi)
// from the Linux 6.12 headers as the C compiler sees them: struct layouts
// come from the DWARF of an object compiled from the headers, constants
// from the preprocessor, every value from a compiled C program. Generation
// was chosen over hand-writing because the headers hold 70 structs and 277
// constants; a hand copy drifts, a generated one cannot. TestABI then
// compiles C against the same headers again and compares sizeof and the
// offset of every field, every ioctl number and every constant with the Go
// declarations, failing by name on any mismatch.
//
// Names follow the kernel: constants keep their C names
// (VFIO_DEVICE_GET_INFO); struct vfio_region_info is VfioRegionInfo and its
// field cap_offset is CapOffset. Anonymous unions become their first member
// (its siblings are named in a comment); flexible array members are not Go
// fields (a Go struct ending in a zero-length array changes size) and are
// named in the type's doc with their offset: decode them with CapArray or
// by offset.
//
// ABI added after 6.12 (IOMMU_IOAS_MAP_FILE, IOMMU_VIOMMU_ALLOC, ...) is in
// newer_linux.go, kept by hand, with the kernel version that added each
// ioctl in Since.
//
// # Request numbers per architecture
//
// Every VFIO and iommufd request is _IO(type, nr). The generic encoding (x86,
// arm64, riscv64, s390x) puts nothing in the direction field; powerpc and
// mips put _IOC_NONE = 1 at bit 29. The constants are written as IOCNone |
// type<<8|nr, IOCNone chosen by build tags: VFIO_GET_API_VERSION is 0x3b64
// on amd64 and arm64, 0x20003b64 on ppc64le (TestIoctlNumbersPPC64LE checks
// every number against the powerpc64le cross compiler's).
//
// # Ioctl helpers
//
// zioctl_linux.go (generated too) has one function per ioctl, named for it:
// IoctlIommuIoasMap issues IOMMU_IOAS_MAP with a *IommuIoasMap. Each fills
// the struct's size field (argsz or size) itself, and passes its argument
// to the system call as an unsafe.Pointer: a pointer converted to uintptr
// before the call expression may point at a stack that has since moved
// (rule 4 of package unsafe). Variable-size arguments (an info struct
// followed by its capability chain, SET_IRQS with its data) are a []byte
// that starts with the header struct. The helpers do not allocate.
//
// # Capability chains
//
// Caps walks the capability chain of a VFIO info buffer; it bounds every
// offset, rejects loops and never panics on malformed input (FuzzCaps).
package uapi

//go:generate go run ./internal/cmd/genuapi -out .
