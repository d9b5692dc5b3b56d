//go:build ppc64 || ppc64le || mips || mipsle || mips64 || mips64le

package uapi

// IOCNone is what _IO puts in a request number's direction field on this
// architecture: _IOC_NONE is 1 at bit 29 on powerpc and mips, so
// VFIO_GET_API_VERSION is 0x20003b64 here, not 0x3b64. Every VFIO and
// iommufd request number includes it.
const IOCNone = iocNoneDir29
