//go:build !(ppc64 || ppc64le)

package vfio

const spaprPlatform = false

func pseries() bool { return false }
