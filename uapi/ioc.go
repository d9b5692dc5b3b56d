package uapi

// iocNoneDir29 is _IO's direction bits where _IOC_NONE is 1 and the
// direction field starts at bit 29 (powerpc, mips, sparc).
const iocNoneDir29 = 1 << 29
