# vfioctl: the two commands of the README.
#   make demo   installs what is missing or outdated, builds the demo's guest kernel and runs a
#               scripted vfioctl session in a QEMU VM with a virtual IOMMU
#   make test   lint, unit tests on the host, then every e2e test in the guests
# Both need root for apt-get; neither needs KVM (QEMU's TCG is used then).
#
# Parts:
#   make lint   go vet, staticcheck, go.mod tidy, the library built and vetted
#               with the oldest Go it supports (MIN_GO)
#   make unit   host tests with -race (no VM)
#   make e2e    the guest suite in every kernel and vIOMMU, and the harness's own tests
#   make kernels  every guest kernel, built now (make e2e builds those it needs as it goes)
#   make bench  the guest benchmarks (map+unmap per mode, 256 MiB three ways; the userspace NVMe driver against the kernel's)
#   make docs   regenerate the shell completions and the manual page from the CLI
#   make install  vfioctl, vfioctl-device-plugin, vfioctl-dra-driver, the manual page and the completions under $(DESTDIR)$(PREFIX)

SHELL := /bin/bash
GO ?= go
DEBS := qemu-system-x86 linux-source-6.12 linux-source-6.1 busybox-static bc flex bison libelf-dev \
        libssl-dev cpio xz-utils gcc make pciutils e2fsprogs util-linux systemd udev zsh fish gcc-powerpc64le-linux-gnu \
        gcc-aarch64-linux-gnu qemu-system-arm qemu-system-ppc
# Lint tools run from their own modules, so they never enter the library's
# module graph (an importer of vfioctl does not inherit them).
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# The go directive of go.mod: the oldest Go the library builds with.
MIN_GO := go1.23.12

.PHONY: demo test deps kernels unit e2e lint bench vfioctl docs install

# The demo boots one kernel (legacy, under intel-iommu): it builds only that
# one; make test builds the rest.
demo: deps
	hack/qemu/kernel.sh legacy
	$(GO) run ./hack/qemu/cmd/demo

# make test builds no kernel up front: TestVM builds each guest kernel not
# yet cached in the background while the boots whose kernels are ready run
# (on a fresh machine the builds are most of the time, and the guests
# leave the host mostly idle). make kernels builds them all first.
test: deps lint unit e2e

# Every package at the newest version the archive offers, not only the
# missing ones: the guest kernels are built from linux-source-*, whose
# point releases change what the kernel answers, so every machine (CI's
# too) builds what a newcomer gets. A new source release gets a new kernel
# cache key, so kernel.sh rebuilds from it.
deps:
	@if apt-get update -qq; then \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEBS) >/dev/null; \
	else \
		echo "make deps: apt-get update failed: going on with the packages installed, if all are" >&2; \
		dpkg -s $(DEBS) >/dev/null; \
	fi
	@dpkg-query -W -f '$${Package} $${Version}\n' linux-source-6.12 linux-source-6.1 qemu-system-x86
	$(GO) mod download
	cd deviceplugin && $(GO) mod download
	cd dra && $(GO) mod download

kernels:
	hack/qemu/kernel.sh legacy compat linux61 iommufdtest arm64 ppc64le headers source

# vet and staticcheck compile or load every package they check and their
# imports, as the guests' builds do later: without cgo, as those are
# (static binaries), the guests' builds find the standard library and the
# modules compiled (no package of the project uses cgo, so both see the
# same files). Measured on 2 cores with the Go cache empty: the vets and
# the x86 and arm64 guests' builds 648 s, against 789 s with cgo on for
# the host's vets. staticcheck goes with them: with cgo on it runs cgo
# over the standard library itself.
lint: export CGO_ENABLED := 0
lint:
	@unformatted=$$(gofmt -l . ); if [ -n "$$unformatted" ]; then echo "gofmt -w these:" $$unformatted; exit 1; fi
	$(GO) vet ./...
	GOARCH=ppc64le $(GO) vet ./...   # the POWER files (build-tagged) and the guest tests as the pSeries boot builds them
	GOARCH=arm64 $(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	$(GO) mod tidy -diff
	cd examples/vmm && $(GO) mod tidy -diff && $(GO) vet ./...
	cd deviceplugin && $(GO) mod tidy -diff && $(GO) vet ./... && $(GO) run $(STATICCHECK) ./...
	cd dra && $(GO) mod tidy -diff && $(GO) vet ./... && $(GO) run $(STATICCHECK) ./...
	GOTOOLCHAIN=$(MIN_GO) $(GO) build ./...
	GOTOOLCHAIN=$(MIN_GO) $(GO) vet ./...

# -count=1: the e2e results depend on the guest kernels, QEMU and guest
# packages that go test's cache cannot see; a cached pass would be stale.
unit:
	$(GO) test -race -count=1 -short $$($(GO) list ./... | grep -v /tests/e2e)
	cd deviceplugin && $(GO) test -race -count=1 ./...
	cd dra && $(GO) test -race -count=1 ./...

e2e:
	@echo "e2e: the guest boots, the kernels not yet cached built beside them (go test prints when done)"
	$(GO) test -count=1 -p 1 -timeout 85m ./tests/e2e ./hack/qemu

# fio (Debian's, 3.33) is the kernel's baseline in the bench guest: only
# make bench needs it, so only make bench installs it.
bench:
	dpkg -s fio >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fio >/dev/null
	hack/qemu/kernel.sh legacy bench
	VFIOCTL_NVME_BENCH=5s VFIOCTL_BENCHCOUNT=5 $(GO) test -count=1 -timeout 30m -run '^(TestVMBenchmarks|TestVMNVMeBench)$$' -v ./tests/e2e

vfioctl:
	$(GO) build -o bin/vfioctl ./cmd/vfioctl

# Generated from the CLI definition; `make unit` fails when they are stale.
docs:
	$(GO) run ./cmd/vfioctl completion bash > completions/vfioctl.bash
	$(GO) run ./cmd/vfioctl completion zsh > completions/_vfioctl
	$(GO) run ./cmd/vfioctl completion fish > completions/vfioctl.fish
	$(GO) run ./cmd/vfioctl man > docs/man/vfioctl.8

PREFIX ?= /usr/local
install:
	$(GO) build -o bin/vfioctl ./cmd/vfioctl
	cd deviceplugin && $(GO) build -o ../bin/vfioctl-device-plugin ./cmd/vfioctl-device-plugin
	install -D -m 0755 bin/vfioctl $(DESTDIR)$(PREFIX)/bin/vfioctl
	cd dra && $(GO) build -o ../bin/vfioctl-dra-driver ./cmd/vfioctl-dra-driver
	install -D -m 0755 bin/vfioctl-device-plugin $(DESTDIR)$(PREFIX)/bin/vfioctl-device-plugin
	install -D -m 0755 bin/vfioctl-dra-driver $(DESTDIR)$(PREFIX)/bin/vfioctl-dra-driver
	install -D -m 0644 docs/man/vfioctl.8 $(DESTDIR)$(PREFIX)/share/man/man8/vfioctl.8
	install -D -m 0644 completions/vfioctl.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/vfioctl
	install -D -m 0644 completions/_vfioctl $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_vfioctl
	install -D -m 0644 completions/vfioctl.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/vfioctl.fish
