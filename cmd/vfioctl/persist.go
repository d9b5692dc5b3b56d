package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/vfioctl/vfioctl/mdev"
	"github.com/vfioctl/vfioctl/pci"
)

// The boot hooks `persist install` writes (paths under --root). Both run
// `vfioctl persist apply`: udev for each device as it appears (hot plug,
// and coldplug at boot), systemd once at boot before the network is
// configured, for systems that run no udev rules for coldplugged devices.
const (
	udevRulePath    = "etc/udev/rules.d/90-vfioctl.rules"
	systemdUnitPath = "etc/systemd/system/vfioctl-persist.service"
	systemdWantPath = "etc/systemd/system/sysinit.target.wants/vfioctl-persist.service"
)

func udevRule(bin string) string {
	return `# Written by vfioctl persist install: each device saved by
# "vfioctl bind --persist" is bound to vfio-pci as it appears, and the
# mediated devices defined by "vfioctl mdev create --persist" are created
# when their parent's driver registers.
ACTION=="add", SUBSYSTEM=="pci", TEST=="` + pci.PersistDir + `/$kernel.json", RUN+="` + bin + ` persist apply $kernel"
ACTION=="change", ENV{MDEV_STATE}=="registered", TEST=="` + mdev.DefinitionsDir + `", RUN+="` + bin + ` mdev start --parent $kernel"
`
}

func systemdUnit(bin string) string {
	return `# Written by vfioctl persist install.
[Unit]
Description=Bind the devices saved by vfioctl bind --persist to vfio-pci and create the mediated devices defined by vfioctl mdev create --persist
DefaultDependencies=no
After=systemd-modules-load.service systemd-udevd.service
Before=sysinit.target network-pre.target
Wants=network-pre.target
ConditionDirectoryNotEmpty=|` + pci.PersistDir + `
ConditionDirectoryNotEmpty=|` + mdev.DefinitionsDir + `

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=-` + bin + ` persist apply
ExecStart=` + bin + ` mdev start

[Install]
WantedBy=sysinit.target
`
}

// installHooks writes the udev rule and the enabled systemd unit under
// root, for the vfioctl binary at bin. It returns the files written.
func installHooks(root, bin string) ([]string, error) {
	files := map[string]string{udevRulePath: udevRule(bin), systemdUnitPath: systemdUnit(bin)}
	var out []string
	for _, rel := range []string{udevRulePath, systemdUnitPath} {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return out, err
		}
		if err := os.WriteFile(p, []byte(files[rel]), 0o644); err != nil {
			return out, err
		}
		out = append(out, p)
	}
	// systemctl enable, without systemctl (image builds, chroots).
	want := filepath.Join(root, systemdWantPath)
	if err := os.MkdirAll(filepath.Dir(want), 0o755); err != nil {
		return out, err
	}
	_ = os.Remove(want)
	if err := os.Symlink("../vfioctl-persist.service", want); err != nil {
		return out, err
	}
	return append(out, want), nil
}

// ensureHooks installs the boot hooks when they are missing or name
// another binary, so that `bind --persist` alone is enough.
func ensureHooks() ([]string, error) {
	bin, err := selfPath()
	if err != nil {
		return nil, err
	}
	if b, err := os.ReadFile(filepath.Join("/", systemdUnitPath)); err == nil && string(b) == systemdUnit(bin) {
		if b, err := os.ReadFile(filepath.Join("/", udevRulePath)); err == nil && string(b) == udevRule(bin) {
			return nil, nil
		}
	}
	return installHooks("/", bin)
}

func selfPath() (string, error) {
	bin, err := os.Executable()
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(bin)
}

type persistResult struct {
	Saved *pci.Persisted `json:"saved,omitempty"`
	Hooks []string       `json:"hooks_installed,omitempty"`
}

func persistCommand() *cli.Command {
	return &cli.Command{
		Name:  "persist",
		Usage: "bindings kept across reboots (bind --persist, unbind --persist; mediated devices: mdev create --persist)",
		UsageText: `vfioctl persist list [--json]
   vfioctl persist apply [ADDRESS]
   vfioctl persist install [--root DIR] [--bin PATH]

Saved bindings live in ` + pci.PersistDir + `, a file per device. At boot a udev
rule (as each device appears) and a systemd unit (once, before the network is
configured) run "vfioctl persist apply", which binds each saved device with
the options it was saved with. Mediated devices defined with "mdev create
--persist" live in ` + mdev.DefinitionsDir + `: the unit runs "vfioctl mdev start"
after the bindings, and the rule runs "vfioctl mdev start --parent P" when
a parent's driver registers. "bind --persist" and "mdev create --persist"
install both hooks.`,
		Subcommands: []*cli.Command{
			{
				Name:      "list",
				Usage:     "the saved bindings and what each device has now",
				UsageText: "vfioctl persist list [--json]",
				Flags:     []cli.Flag{jsonFlag},
				Action:    persistList,
			},
			{
				Name:  "apply",
				Usage: "bind the saved devices (all, or the one named) now, as the boot hooks do",
				UsageText: `vfioctl persist apply [--json] [ADDRESS]
   vfioctl persist apply                 every saved binding (the systemd unit)
   vfioctl persist apply 0000:01:00.0    one device (the udev rule, as it appears)

A saved device that is absent is reported and left for when it appears; any
failure makes the exit status 1.`,
				Flags:  []cli.Flag{jsonFlag},
				Action: persistApply,
			},
			{
				Name:  "install",
				Usage: "write the udev rule and the enabled systemd unit that apply the saved bindings and mdev definitions at boot",
				UsageText: `vfioctl persist install [--root DIR] [--bin PATH]
   vfioctl persist install                      on this host
   vfioctl persist install --root /mnt/image    into an image being built`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "root", Value: "/", Usage: "the root the files are written under"},
					&cli.StringFlag{Name: "bin", Usage: "the vfioctl the hooks run (default: this one)"},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() != 0 {
						return usagef("persist install takes no arguments")
					}
					bin := c.String("bin")
					if bin == "" {
						var err error
						if bin, err = selfPath(); err != nil {
							return err
						}
					}
					if !filepath.IsAbs(bin) {
						return usagef("--bin must be an absolute path, got %q", bin)
					}
					files, err := installHooks(c.String("root"), bin)
					if err != nil {
						return err
					}
					for _, f := range files {
						fprintf(c.App.Writer, "wrote %s\n", f)
					}
					return nil
				},
			},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("unknown persist command %q (list, apply, install)", c.Args().First())
			}
			return persistList(c)
		},
	}
}

type persistEntry struct {
	pci.Persisted
	Driver string `json:"driver_now"`
}

func persistList(c *cli.Context) error {
	if c.NArg() != 0 {
		return usagef("persist list takes no arguments")
	}
	saved, err := pci.ListPersisted()
	if err != nil {
		return err
	}
	var out []persistEntry
	for _, p := range saved {
		e := persistEntry{Persisted: p, Driver: "absent"}
		if d, err := pci.Get(p.Address); err == nil {
			e.Driver = orDash(d.Driver)
		}
		out = append(out, e)
	}
	return emit(c, out, func(w io.Writer) {
		fprintf(w, "ADDRESS\tNOW\tOPTIONS\tSAVED\n")
		for _, e := range out {
			fprintf(w, "%s\t%s\t%s\t%s\n", e.Address, e.Driver, persistOptions(e.Persisted), e.Saved)
		}
	})
}

func persistOptions(p pci.Persisted) string {
	var o []string
	if p.Group {
		o = append(o, "--group")
	}
	if p.Force {
		o = append(o, "--force")
	}
	if p.NoIOMMU {
		o = append(o, "--noiommu")
	}
	if p.Owner != nil {
		o = append(o, "--owner "+p.Owner.String())
	}
	return orDash(strings.Join(o, " "))
}

func persistApply(c *cli.Context) error {
	if c.NArg() > 1 {
		return usagef("persist apply takes at most one PCI address")
	}
	if c.NArg() == 1 {
		if _, err := pci.ParseAddress(c.Args().First()); err != nil {
			return usageError{err}
		}
	}
	res, err := pci.ApplyPersisted(c.Args().First())
	return emitResults(c, res, len(res), func(w io.Writer) {
		for _, r := range res {
			fprintf(w, "%s\t%s\t%s\n", r.Address, r.Result, r.Error)
		}
	}, err)
}

// saveBinding records a --persist bind and installs the boot hooks.
func saveBinding(addr string, opts pci.BindOptions) (persistResult, error) {
	p, err := pci.Persist(addr, opts)
	if err != nil {
		return persistResult{}, err
	}
	hooks, err := ensureHooks()
	if err != nil {
		return persistResult{Saved: &p}, fmt.Errorf("saved %s, but the boot hooks: %w", pci.PersistDir, err)
	}
	return persistResult{Saved: &p, Hooks: hooks}, nil
}
