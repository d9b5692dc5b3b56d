// Package edu is a userspace driver for QEMU's "edu" teaching device
// (1234:11e8, -device edu) through VFIO: its BAR0 registers, its DMA engine
// and its interrupt. It is the smallest device that can prove a VFIO setup
// end to end: a buffer mapped through the IOMMU goes to the device and
// comes back (Roundtrip), and a DMA outside the mappings faults instead.
// `vfioctl dma-test` and the e2e tests drive it; it is a product package
// like nvme, not a test helper.
//
// QEMU 7.2's edu aborts on a DMA of exactly 4096 bytes (MaxDMA is 4095)
// and, unless started with dma_mask, drives only 28 address bits
// (DMAMask): map buffers below 256 MiB of IOVA.
package edu
