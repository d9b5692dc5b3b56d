# vfioctl: the two commands of the README.
#   make demo   installs what is missing, builds the guest kernel and runs a
#               scripted vfioctl session in a QEMU VM with a virtual IOMMU
#   make test   unit tests on the host, then every e2e test in the guests
# Both need root for apt-get; neither needs KVM (QEMU's TCG is used then).

SHELL := /bin/bash
GO ?= go
DEBS := qemu-system-x86 linux-source-6.12 busybox-static bc flex bison libelf-dev \
        libssl-dev cpio xz-utils gcc make pciutils e2fsprogs
STATICCHECK := honnef.co/go/tools/cmd/staticcheck

.PHONY: demo test deps kernels unit e2e lint vfioctl

demo: deps kernels
	$(GO) run ./hack/qemu/cmd/demo

# -count=1: the e2e results depend on the guest kernels, QEMU and guest
# packages that go test's cache cannot see; a cached pass would be stale.
test: deps kernels lint
	$(GO) test -race -count=1 -p 1 -timeout 60m ./...

deps:
	@missing=$$(for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	$(GO) mod download

kernels:
	hack/qemu/kernel.sh legacy compat headers

lint:
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

vfioctl:
	$(GO) build -o bin/vfioctl ./cmd/vfioctl
