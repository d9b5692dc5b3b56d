package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/vfioctl/vfioctl/pci"
	"github.com/vfioctl/vfioctl/vfio"
)

func migrateCommand() *cli.Command {
	return &cli.Command{
		Name:  "migrate",
		Usage: "save, load and move a device's state through VFIO migration v2",
		UsageText: `vfioctl migrate DEVICE --to DEVICE       move a running device's state into another (pre-copy, stop-copy, resume)
   vfioctl migrate state DEVICE [--json]    what the device offers and the state it is in
   vfioctl migrate save DEVICE FILE         stop the device and write its state to FILE (- for stdout)
   vfioctl migrate load DEVICE FILE         give the device the state in FILE and run it

   vfioctl migrate 83b8f4f2-509f-382f-3c1e-e6bfe0fa1001 --to 83b8f4f2-509f-382f-3c1e-e6bfe0fa1002
   vfioctl migrate save 0000:03:00.1 /var/lib/vm1/nic.state

DEVICE is a PCI address on vfio-pci or a mediated device's UUID. The
device's driver must implement migration (vfio-pci variant drivers such as
mlx5_vfio_pci, or the kernel's mtty sample): others exit 4. A state the
driver rejects (a truncated or foreign stream) exits 1 naming the move
refused and the state the device is left in.`,
		Flags: []cli.Flag{jsonFlag, backendFlag, &cli.StringFlag{Name: "to", Usage: "the destination device (PCI address or mdev UUID)"}},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 || c.String("to") == "" {
				return usagef("migrate needs a source device and --to DEVICE (or a subcommand: state, save, load)")
			}
			return withMigration(c, c.Args().First(), func(src *vfio.Migration) error {
				return withMigration(c, c.String("to"), func(dst *vfio.Migration) error {
					t0 := time.Now()
					st, err := vfio.Transfer(src, dst)
					if err != nil {
						return err
					}
					out := struct {
						Source      string `json:"source"`
						Destination string `json:"destination"`
						vfio.TransferStats
						Seconds float64 `json:"seconds"`
					}{c.Args().First(), c.String("to"), st, time.Since(t0).Seconds()}
					return emit(c, out, func(w io.Writer) {
						fprintf(w, "moved %s to %s: %d bytes pre-copy while running, %d bytes stop-copy, in %.3f s; %s is stopped, %s runs\n",
							out.Source, out.Destination, st.PreCopy, st.StopCopy, out.Seconds, out.Source, out.Destination)
					})
				})
			})
		},
		Subcommands: []*cli.Command{
			{
				Name: "state", Usage: "the migration features a device offers and its state", ArgsUsage: "DEVICE",
				Flags: []cli.Flag{jsonFlag, backendFlag},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usagef("migrate state needs a device (PCI address or mdev UUID)")
					}
					return withMigration(c, c.Args().First(), func(m *vfio.Migration) error {
						s, err := m.State()
						if err != nil {
							return err
						}
						out := struct {
							Device        string  `json:"device"`
							Flags         string  `json:"flags"`
							State         string  `json:"state"`
							StopCopyBytes *uint64 `json:"stop_copy_bytes,omitempty"`
						}{Device: c.Args().First(), Flags: m.Flags().String(), State: s.String()}
						if n, err := m.StopCopySize(); err == nil {
							out.StopCopyBytes = &n
						}
						return emit(c, out, func(w io.Writer) {
							fprintf(w, "%s: migration %s, state %s", out.Device, out.Flags, out.State)
							if out.StopCopyBytes != nil {
								fprintf(w, ", about %d bytes to stop-copy", *out.StopCopyBytes)
							}
							fprintf(w, "\n")
						})
					})
				},
			},
			{
				Name: "save", Usage: "stop a device and write its state to a file", ArgsUsage: "DEVICE FILE",
				Flags: []cli.Flag{backendFlag, &cli.BoolFlag{Name: "resume", Usage: "run the device again after saving (default: leave it stopped)"}},
				Action: func(c *cli.Context) error {
					if c.NArg() != 2 {
						return usagef("migrate save needs a device and a file (- for stdout)")
					}
					return withMigration(c, c.Args().First(), func(m *vfio.Migration) error {
						w, done, err := createOutput(c.Args().Get(1))
						if err != nil {
							return err
						}
						n, err := m.Save(w)
						if err := done(err); err != nil {
							return err
						}
						state := "stopped"
						if c.Bool("resume") {
							if _, err := m.SetState(vfio.MigRunning); err != nil {
								return err
							}
							state = "running again"
						}
						tell("saved %d bytes of %s's state to %s; the device is %s", n, c.Args().First(), c.Args().Get(1), state)
						return nil
					})
				},
			},
			{
				Name: "load", Usage: "give a device the state saved in a file, and run it", ArgsUsage: "DEVICE FILE",
				Flags: []cli.Flag{backendFlag, &cli.BoolFlag{Name: "stopped", Usage: "leave the device stopped after loading"}},
				Action: func(c *cli.Context) error {
					if c.NArg() != 2 {
						return usagef("migrate load needs a device and a file (- for stdin)")
					}
					return withMigration(c, c.Args().First(), func(m *vfio.Migration) error {
						r := io.Reader(os.Stdin)
						if name := c.Args().Get(1); name != "-" {
							f, err := os.Open(name)
							if err != nil {
								return usageError{err}
							}
							defer f.Close()
							r = f
						}
						n, err := m.Load(r)
						if err != nil {
							return err
						}
						state := "stopped"
						if !c.Bool("stopped") {
							if _, err := m.SetState(vfio.MigRunning); err != nil {
								return err
							}
							state = "running"
						}
						tell("loaded %d bytes into %s; the device is %s", n, c.Args().First(), state)
						return nil
					})
				},
			},
		},
	}
}

// tell says what a command did on stderr, for people; stdout stays the
// data's (save -).
func tell(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

// createOutput opens FILE for writing ("-": stdout); done closes it,
// removing a file left incomplete by a failed save.
func createOutput(name string) (io.Writer, func(error) error, error) {
	if name == "-" {
		return os.Stdout, func(err error) error { return err }, nil
	}
	f, err := os.Create(name)
	if err != nil {
		return nil, nil, usageError{err}
	}
	return f, func(err error) error {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(name)
		}
		return err
	}, nil
}

// withMigration opens DEVICE (a PCI address on vfio-pci or an mdev UUID)
// through the --backend and runs f on its Migration.
func withMigration(c *cli.Context, name string, f func(*vfio.Migration) error) error {
	return openDevice(c, name, func(_ *pci.Device, h *vfio.Handle) error {
		m, err := h.Device().Migration()
		if err != nil {
			return err
		}
		return f(m)
	})
}
