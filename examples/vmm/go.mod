module example.com/vmm

go 1.23

require (
	github.com/vfioctl/vfioctl v0.0.0
	golang.org/x/sys v0.30.0
)

// The library as this repository holds it.
replace github.com/vfioctl/vfioctl => ../..
