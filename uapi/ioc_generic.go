//go:build !(ppc64 || ppc64le || mips || mipsle || mips64 || mips64le)

package uapi

// IOCNone is what _IO puts in a request number's direction field on this
// architecture: nothing on x86, arm64, riscv64, s390x and loong64 (the
// generic encoding). Every VFIO and iommufd request number includes it.
const IOCNone = 0
