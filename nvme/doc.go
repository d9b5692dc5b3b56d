// Package nvme is a userspace NVMe driver on vfio and dma: it takes a
// controller opened with vfio.Open (any backend) and drives it from user
// space, as SPDK and libvfn do in C.
//
// New disables the controller, builds the admin queue pair in one DMA pool
// mapped once through the Handle's Mapper, enables it within CAP.TO, reads
// Identify Controller and creates I/O queue pairs. Completions are polled
// (the fastest path: no system call per command) or, with
// Options.Interrupts, signalled per queue by an MSI-X vector on an eventfd
// that the waiting thread polls itself (QueuePair.SteerInterrupt sends the
// vector to its CPU); Options.PollBeforeSleep spins first, then sleeps
// (hybrid). Data buffers come from the same pool (Controller.TakeBuffer),
// so the I/O path maps nothing and allocates nothing. Enqueue and Ring
// send a batch of commands with one doorbell write; the completion
// queue's head doorbell is written once every Options.QueueDepth
// completions (its completion queue is twice the size, so it never fills).
//
// Namespace.Bench measures it: random reads (and writes that put back
// what was read) on one or more queues, each from its own thread, with
// exact latency percentiles (Latencies) and the data checked as it runs.
// A program that only polls does best with GOMAXPROCS at its number of
// queues: see Bench.
//
// Every command has a deadline (Options.Timeout). A command past it is
// aborted; when the controller reports a fatal status (CSTS.CFS) or does
// not answer the abort, the error says so and Reset brings it back.
//
// Shell equivalent of what the kernel driver would do instead: none; this
// package replaces drivers/nvme/host/pci.c for one process.
//
// # Errors
//
// What VFIO or the IOMMU refuses arrives as vfioerr's types (an OpError
// wrapping the errno). What the controller answers is different and has
// its own type: a *CommandError carries the NVMe status code the device
// completed a command with (or ErrTimeout, ErrFatal), which no errno can
// express. ErrBadRequest is a request refused before it reaches the
// device (a range past the namespace, a buffer of partial blocks).
package nvme
