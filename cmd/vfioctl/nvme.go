package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/vfioctl/vfioctl/nvme"
	"github.com/vfioctl/vfioctl/pci"
	"github.com/vfioctl/vfioctl/vfio"
)

var (
	nsidFlag = &cli.UintFlag{Name: "nsid", Value: 1, Usage: "namespace id"}
	irqFlag  = &cli.BoolFlag{Name: "interrupts", Usage: "complete through MSI-X on eventfds instead of polling"}
)

func nvmeCommand() *cli.Command {
	return &cli.Command{
		Name:  "nvme",
		Usage: "drive an NVMe controller bound to vfio-pci from user space (identify, read, write, bench)",
		UsageText: `vfioctl nvme identify ADDRESS
   vfioctl nvme read ADDRESS --lba 0 --blocks 8 > blocks.bin
   vfioctl nvme write ADDRESS --lba 2048 < blocks.bin
   vfioctl nvme bench ADDRESS --depth 32 --time 5s

The controller is reset and owned by vfioctl while the command runs; the
kernel's nvme driver must not have it (vfioctl bind ADDRESS first).`,
		Subcommands: []*cli.Command{
			{
				Name:      "identify",
				Usage:     "Identify Controller and the namespace",
				UsageText: "vfioctl nvme identify [--nsid 1] [--json] ADDRESS",
				Flags:     []cli.Flag{jsonFlag, backendFlag, nsidFlag},
				Action: func(c *cli.Context) error {
					return withNVMe(c, nil, func(ctl *nvme.Controller, ns *nvme.Namespace) error {
						out := struct {
							Controller *nvme.IdentifyController `json:"controller"`
							Namespace  nvme.NamespaceInfo       `json:"namespace"`
							MaxXfer    int                      `json:"max_transfer"`
						}{ctl.Identify(), ns.Info, ctl.MaxTransfer()}
						return emit(c, out, func(w io.Writer) {
							id := ctl.Identify()
							fprintf(w, "model\t%s\nserial\t%s\nfirmware\t%s\nvendor\t%#04x\nnamespaces\t%d\nmax transfer\t%d bytes\n", id.Model, id.Serial, id.Firmware, id.VendorID, id.Namespaces, ctl.MaxTransfer())
							fprintf(w, "namespace %d\t%d blocks of %d bytes (%d MiB)\n", ns.Info.ID, ns.Info.Blocks, ns.Info.BlockSize, ns.Info.Bytes()>>20)
						})
					})
				},
			},
			{
				Name:      "read",
				Usage:     "read blocks to a file or stdout",
				UsageText: "vfioctl nvme read [--nsid 1] --lba N --blocks N [--output FILE] ADDRESS",
				Flags: []cli.Flag{backendFlag, nsidFlag,
					&cli.Uint64Flag{Name: "lba", Usage: "first block", Required: true},
					&cli.Uint64Flag{Name: "blocks", Value: 1, Usage: "blocks to read"},
					&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "-", Usage: "file to write (- for stdout)"}},
				Action: func(c *cli.Context) error {
					if c.Uint64("blocks") == 0 {
						return usagef("--blocks must be at least 1")
					}
					return withNVMe(c, nil, func(_ *nvme.Controller, ns *nvme.Namespace) error {
						off, n, err := ns.Span(c.Uint64("lba"), c.Uint64("blocks"))
						if err != nil {
							return err // ErrBadRequest: exit 2
						}
						if n > 1<<30 {
							return usagef("%d bytes is more than one read command of vfioctl takes (1 GiB)", n)
						}
						buf := make([]byte, n)
						if _, err := ns.ReadAt(buf, off); err != nil {
							return err
						}
						w := c.App.Writer
						if o := c.String("output"); o != "-" {
							return os.WriteFile(o, buf, 0o644)
						}
						_, err = w.Write(buf)
						return err
					})
				},
			},
			{
				Name:      "write",
				Usage:     "write a file or stdin (whole blocks) at a block",
				UsageText: "vfioctl nvme write [--nsid 1] --lba N [--input FILE] ADDRESS",
				Flags: []cli.Flag{backendFlag, nsidFlag,
					&cli.Uint64Flag{Name: "lba", Usage: "first block", Required: true},
					&cli.StringFlag{Name: "input", Aliases: []string{"i"}, Value: "-", Usage: "file to read (- for stdin)"}},
				Action: func(c *cli.Context) error {
					var data []byte
					var err error
					if in := c.String("input"); in == "-" {
						data, err = io.ReadAll(io.LimitReader(c.App.Reader, 1<<30+1))
					} else {
						data, err = os.ReadFile(in)
					}
					if err != nil {
						return err
					}
					if len(data) == 0 || len(data) > 1<<30 {
						return usagef("the input is %d bytes: write takes 1 byte to 1 GiB, in whole blocks", len(data))
					}
					return withNVMe(c, nil, func(ctl *nvme.Controller, ns *nvme.Namespace) error {
						// Blocks rounded up: a length that is not whole
						// blocks is WriteAt's to refuse (ErrBadRequest).
						bs := ns.Info.BlockSize
						off, _, err := ns.Span(c.Uint64("lba"), uint64((len(data)+bs-1)/bs))
						if err != nil {
							return err // ErrBadRequest: exit 2
						}
						if _, err := ns.WriteAt(data, off); err != nil {
							return err
						}
						if ctl.Identify().VWC {
							return ns.Flush(ctl.Queue(0))
						}
						return nil
					})
				},
			},
			{
				Name:  "bench",
				Usage: "random reads (and writes) at a queue depth: IOPS and exact latency percentiles",
				UsageText: `vfioctl nvme bench [--depth 1] [--time 5s] [--warmup 1s] [--size 4096] [--queues 1] [--cpu N,...]
       [--write-percent 0] [--interrupts [--poll-before-sleep 20us]] [--json] ADDRESS

   vfioctl nvme bench --depth 32 0000:02:00.0             # one polling thread, not pinned
   vfioctl nvme bench --depth 1 --cpu 1 0000:02:00.0      # pinned to CPU 1
   vfioctl nvme bench --queues 2 --cpu 0,1 --depth 16 0000:02:00.0
   vfioctl nvme bench --write-percent 30 --depth 32 0000:02:00.0
   vfioctl nvme bench --interrupts --poll-before-sleep 30us 0000:02:00.0

Each write puts back what its buffer has just read, so the namespace's
contents do not change. A latency runs from before the command's entry is
written to after its completion is seen.`,
				Flags: []cli.Flag{jsonFlag, backendFlag, nsidFlag, irqFlag,
					&cli.IntFlag{Name: "depth", Value: 1, Usage: "commands kept outstanding on each queue"},
					&cli.DurationFlag{Name: "time", Value: 5 * time.Second, Usage: "how long to measure"},
					&cli.DurationFlag{Name: "warmup", Value: time.Second, Usage: "how long to run before measuring"},
					&cli.IntFlag{Name: "size", Value: 4096, Usage: "bytes per command"},
					&cli.IntFlag{Name: "queues", Value: 1, Usage: "I/O queue pairs, each driven by its own thread"},
					&cli.IntSliceFlag{Name: "cpu", Usage: "pin queue i's thread to the i-th of these CPUs and the process's other threads to all of them (default: not pinned)"},
					&cli.IntFlag{Name: "write-percent", Usage: "share of writes, 0 to 50"},
					&cli.DurationFlag{Name: "poll-before-sleep", Usage: "with --interrupts: spin this long before sleeping on the vector (hybrid)"},
					&cli.StringFlag{Name: "shadow-doorbells", Value: "auto", Usage: "`auto`, on or off: use the controller's shadow doorbells where it offers them (auto: off at --depth 1, where each command needs its register write anyway and the shadow words only cost the controller reads)"},
					&cli.StringFlag{Name: "cpuprofile", Usage: "write a CPU profile of the run to `FILE` (go tool pprof)"}},
				Action: func(c *cli.Context) error {
					if c.Int("depth") < 1 || c.Duration("time") <= 0 || c.Int("size") <= 0 || c.Int("queues") < 1 {
						return usagef("--depth, --time, --size and --queues must be positive")
					}
					if c.Duration("warmup") < 0 || c.Duration("poll-before-sleep") < 0 {
						return usagef("--warmup and --poll-before-sleep cannot be negative")
					}
					if c.IsSet("poll-before-sleep") && !c.Bool("interrupts") {
						return usagef("--poll-before-sleep needs --interrupts (without it the queue only polls)")
					}
					if w := c.Int("write-percent"); w < 0 || w > 50 {
						return usagef("--write-percent %d: 0 to 50 (each write rewrites a block just read)", w)
					}
					noShadow := false
					switch sd := c.String("shadow-doorbells"); sd {
					case "auto":
						noShadow = c.Int("depth") == 1
					case "on":
					case "off":
						noShadow = true
					default:
						return usagef("--shadow-doorbells %q: auto, on or off", sd)
					}
					for _, cpu := range c.IntSlice("cpu") {
						if cpu < 0 {
							return usagef("--cpu %d: CPUs are numbered from 0", cpu)
						}
					}
					opts := &nvme.Options{Queues: c.Int("queues"), Interrupts: c.Bool("interrupts"), PollBeforeSleep: c.Duration("poll-before-sleep"),
						NoShadowDoorbells: noShadow, QueueDepth: max(64, c.Int("depth")+1)}
					return withNVMe(c, opts, func(ctl *nvme.Controller, ns *nvme.Namespace) error {
						// On a terminal the progress line rewrites itself;
						// to a file or pipe it is one line a second.
						tty := isTerminal(c.App.ErrWriter)
						progress := func(ios uint64, el time.Duration) {
							if c.Bool("json") {
								return
							}
							line := fmt.Sprintf("%s: %d I/Os, %.0f IOPS", el.Round(time.Second), ios, float64(ios)/el.Seconds())
							if tty {
								fmt.Fprint(c.App.ErrWriter, "\r"+line)
							} else {
								fmt.Fprintln(c.App.ErrWriter, line)
							}
						}
						if path := c.String("cpuprofile"); path != "" {
							f, err := os.Create(path)
							if err != nil {
								return err
							}
							defer f.Close()
							if err := pprof.StartCPUProfile(f); err != nil {
								return err
							}
							defer pprof.StopCPUProfile()
						}
						// The bench is all this process does: one P per
						// polling queue. With more, each preemption of a
						// poller (sysmon's, every 10 ms) also wakes an idle
						// P's thread to look for work, context switches on
						// the other CPUs that, emulated, slow the device.
						defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(c.Int("queues")))
						if cpus := c.IntSlice("cpu"); len(cpus) > 0 {
							if err := pinProcess(cpus); err != nil {
								return err
							}
						}
						res, err := ns.Bench(nvme.BenchOptions{Depth: c.Int("depth"), Duration: c.Duration("time"), Warmup: c.Duration("warmup"), Size: c.Int("size"),
							Queues: c.Int("queues"), CPUs: c.IntSlice("cpu"), WritePercent: c.Int("write-percent"), Progress: progress})
						if tty && !c.Bool("json") {
							fmt.Fprintln(c.App.ErrWriter)
						}
						if err != nil {
							return err
						}
						out := benchOutput{BenchResult: res, ShadowDoorbells: ctl.ShadowDoorbells()}
						return emit(c, out, func(w io.Writer) {
							mode := "polled"
							if c.Bool("interrupts") {
								mode = "MSI-X"
								if d := c.Duration("poll-before-sleep"); d > 0 {
									mode = fmt.Sprintf("hybrid (spin %s, then MSI-X)", d)
								}
							}
							what := fmt.Sprintf("%d-byte random reads", c.Int("size"))
							if wp := c.Int("write-percent"); wp > 0 {
								what = fmt.Sprintf("%d-byte random commands, %d%% writes", c.Int("size"), wp)
							}
							queues := "1 queue"
							if n := c.Int("queues"); n > 1 {
								queues = fmt.Sprintf("%d queues", n)
							}
							if out.ShadowDoorbells {
								mode += ", shadow doorbells"
							}
							fprintf(w, "%s, depth %d, %s, %s:\n%.0f IOPS\tp50 %s\tp99 %s\tp99.9 %s\tmax %s\n",
								queues, c.Int("depth"), what, mode, res.IOPS, res.P50, res.P99, res.P999, res.Max)
						})
					})
				},
			},
		},
	}
}

// benchOutput is what nvme bench reports: the result, and whether the I/O
// queues used shadow doorbells (--shadow-doorbells).
type benchOutput struct {
	nvme.BenchResult
	ShadowDoorbells bool `json:"shadow_doorbells"`
}

// withNVMe opens the controller of the address argument and its namespace.
func withNVMe(c *cli.Context, opts *nvme.Options, f func(*nvme.Controller, *nvme.Namespace) error) error {
	return withDevice(c, func(d *pci.Device, h *vfio.Handle) error {
		if d.Class>>8 != 0x0108 {
			return usagef("%s is not an NVMe controller (class %#06x)", d.Address, d.Class)
		}
		ctl, err := nvme.New(h, opts)
		if err != nil {
			return err
		}
		defer ctl.Close()
		ns, err := ctl.Namespace(uint32(c.Uint("nsid")))
		if err != nil {
			return err
		}
		return f(ctl, ns)
	})
}

// isTerminal reports whether w is a terminal a person watches: a tty, with
// a TERM that can return the carriage ("dumb" or none, as on a serial
// console a program logs to, gets whole lines).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	if term := os.Getenv("TERM"); term == "" || term == "dumb" {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
