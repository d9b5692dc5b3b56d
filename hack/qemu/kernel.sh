#!/usr/bin/env bash
# kernel.sh VARIANT... : build (or reuse) the guest kernels and print, one per
# line, "VARIANT PATH-TO-bzImage".
#
#   legacy      Linux 6.12: tinyconfig + kernel/base.config (type1 container, iommufd, cdev)
#   compat      Linux 6.12: legacy + kernel/compat.config (/dev/vfio/vfio served by iommufd)
#   iommufdtest Linux 6.12: legacy + kernel/iommufdtest.config (CONFIG_IOMMUFD_TEST's mock IOMMU)
#   bench       Linux 6.12: legacy + kernel/bench.config (io_uring, for make bench)
#   arm64       Linux 6.12 for arm64 (QEMU virt, SMMUv3), cross-built: arm64 tinyconfig
#               + kernel/arm64.config; prints the path of its Image
#   ppc64le     Linux 6.12 for ppc64le (QEMU pseries, POWER9, SPAPR TCE IOMMU),
#               cross-built: powerpc tinyconfig + kernel/ppc64le.config; prints
#               the path of its vmlinux (what QEMU's -kernel loads there)
#   linux61     Linux 6.1 (no iommufd: 6.2; no device cdev: 6.6): base.config
#               without the options kernel/linux61.absent names, every other one
#               checked, + kernel/linux61.config (modules, for the mdev samples)
#   headers     the sanitized uapi headers of the 6.12 tree (prints the include dir)
#   source      the unpacked 6.12 source tree (prints its directory)
#
# Builds are cached under ${VFIOCTL_CACHE:-${XDG_CACHE_HOME:-~/.cache}/vfioctl}
# keyed by the kernel version, the variant and a hash of what decides it (its
# fragments and recipe, see key), so a second run returns in well under a
# second and changing one variant rebuilds only that one. The cache
# is shared by every run on the machine: a lock makes a second kernel.sh wait
# for the first instead of building in (or deleting) the same tree, while
# one whose kernels are all cached reads them without waiting. The
# sources are Debian's linux-source-6.12 and linux-source-6.1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${VFIOCTL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vfioctl}
jobs=${VFIOCTL_JOBS:-$(nproc)}

log() { printf 'kernel.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

mkdir -p "$cache"

# lock: take the cache's lock before changing anything in it (unpacking,
# building); held until exit. What is already built is read without it
# (every output appears by rename), so a run that finds its kernels cached
# never waits for another run's build.
locked=
lock() {
	[ -z "$locked" ] || return 0
	exec 9>>"$cache/lock"
	if ! flock -n 9; then
		log "waiting for another kernel.sh to release $cache/lock"
		flock 9
	fi
	locked=1
}

# source SERIES: unpack Debian's linux-source-SERIES once; sets srcdir and kver.
source_tree() {
	local tarball
	tarball=$(ls /usr/src/linux-source-"$1".tar.* 2>/dev/null | head -n1 || true)
	[ -n "$tarball" ] || die "no /usr/src/linux-source-$1.tar.*: apt-get install linux-source-$1"
	srcdir=$cache/src/$(basename "$tarball" | sed 's/\.tar\..*//')
	[ -f "$srcdir/.unpacked" ] || lock
	if [ ! -f "$srcdir/.unpacked" ]; then
		log "unpacking $tarball"
		rm -rf "$srcdir" && mkdir -p "$cache/src"
		tar -C "$cache/src" -xf "$tarball"
		touch "$srcdir/.unpacked"
	fi
	kver=$(make -s -C "$srcdir" kernelversion)
}

# apply FRAGMENT... onto the .config in build dir $1, then verify every
# option; a later fragment overrides an earlier one.
apply() {
	local dir=$1; shift
	local -A want=()
	local order=() line opt
	for frag in "$@"; do
		while IFS= read -r line; do
			case $line in ''|'#'*) continue ;; esac
			opt=${line%%=*}
			[ -n "${want[$opt]+x}" ] || order+=("$opt")
			want[$opt]=${line#*=}
		done <"$frag"
	done
	local args=() val
	for opt in "${order[@]}"; do
		val=${want[$opt]}
		case $val in y) args+=(-e "${opt#CONFIG_}") ;; n) args+=(-d "${opt#CONFIG_}") ;; *) args+=(--set-val "${opt#CONFIG_}" "$val") ;; esac
	done
	"$srcdir/scripts/config" --file "$dir/.config" "${args[@]}"
	make -s -C "$srcdir" O="$dir" olddefconfig >/dev/null
	local missing=()
	for opt in "${order[@]}"; do
		val=${want[$opt]}
		if [ "$val" = n ]; then
			if grep -q "^$opt=" "$dir/.config"; then missing+=("$opt (wanted off)"); fi
		else
			grep -qx "$opt=$val" "$dir/.config" || missing+=("$opt")
		fi
	done
	[ ${#missing[@]} -eq 0 ] || die "options dropped out of $dir/.config (missing dependencies?): ${missing[*]}"
}

# recipe_VARIANT DIR: configure the build tree DIR. A variant's cache key
# hashes its recipe, the recipes and fragments it builds on, apply and
# compile, so changing one variant never invalidates another's kernel.
recipe_legacy() {
	rm -rf "$1" && mkdir -p "$1"
	make -s -C "$srcdir" O="$1" tinyconfig >/dev/null
	apply "$1" "$here/kernel/base.config"
}
recipe_linux61() {
	rm -rf "$1" && mkdir -p "$1"
	make -s -C "$srcdir" O="$1" tinyconfig >/dev/null
	grep -v -x -f <(sed 's/$/=.*/' "$here/kernel/linux61.absent" | grep -v '^#') "$here/kernel/base.config" >"$1/fragment.config"
	apply "$1" "$1/fragment.config" "$here/kernel/linux61.config"
}
# Variants on top of legacy start from its build tree, so only what the
# config change touches is rebuilt (tens of seconds, not a full build).
from_legacy() {
	local dir=$1 base=$cache/build/legacy; shift
	if [ ! -f "$base/vmlinux" ]; then
		recipe_legacy "$base"
		log "building the legacy tree ($kver) in $base with $jobs jobs"
		compile "$base" || { tail -n 40 "$base/build.log" >&2; die "build of legacy failed; log: $base/build.log"; }
	fi
	rm -rf "$dir" && cp -a "$base" "$dir"
	apply "$dir" "$here/kernel/base.config" "$@"
}
# Cross-built variants: the architecture and the toolchain prefix make
# reads from the environment (exported by cross for the whole variant).
recipe_arm64() {
	rm -rf "$1" && mkdir -p "$1"
	make -s -C "$srcdir" O="$1" tinyconfig >/dev/null
	apply "$1" "$here/kernel/arm64.config"
}
recipe_ppc64le() {
	rm -rf "$1" && mkdir -p "$1"
	make -s -C "$srcdir" O="$1" tinyconfig >/dev/null
	apply "$1" "$here/kernel/ppc64le.config"
}
compile_cross() {
	make -s -C "$srcdir" O="$1" -j"$jobs" "$image" >"$1/build.log" 2>&1
}
recipe_compat() { from_legacy "$1" "$here/kernel/compat.config"; }
recipe_iommufdtest() { from_legacy "$1" "$here/kernel/iommufdtest.config"; }
recipe_bench() { from_legacy "$1" "$here/kernel/bench.config"; }

compile() {
	make -s -C "$srcdir" O="$1" -j"$jobs" bzImage >"$1/build.log" 2>&1
}

# modules DIR OUT: a kernel with module support (linux61 only) builds its
# modules and keeps every .ko in OUT/modules, where the e2e harness
# finds them and packs them for the guest's init to load.
modules() {
	grep -q '^CONFIG_MODULES=y' "$1/.config" || return 0
	make -s -C "$srcdir" O="$1" -j"$jobs" modules >>"$1/build.log" 2>&1 || return 1
	rm -rf "$2/modules" && mkdir -p "$2/modules"
	find "$1" -name '*.ko' -exec cp {} "$2/modules/" \;
}

# cross VARIANT: the ARCH, CROSS_COMPILE and image of a cross-built variant
# (nothing for the x86 ones).
cross() {
	case $1 in
	arm64)
		command -v aarch64-linux-gnu-gcc >/dev/null || die "no aarch64-linux-gnu-gcc: apt-get install gcc-aarch64-linux-gnu"
		export ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-
		image=Image image_path=arch/arm64/boot/Image
		;;
	ppc64le)
		command -v powerpc64le-linux-gnu-gcc >/dev/null || die "no powerpc64le-linux-gnu-gcc: apt-get install gcc-powerpc64le-linux-gnu"
		export ARCH=powerpc CROSS_COMPILE=powerpc64le-linux-gnu-
		image=vmlinux image_path=vmlinux
		;;
	*) unset ARCH CROSS_COMPILE; image=bzImage image_path=arch/x86/boot/bzImage ;;
	esac
}

# key VARIANT: the hash of everything that decides VARIANT's kernel.
key() {
	local files=("$here/kernel/base.config") fns=(apply compile "recipe_$1")
	case $1 in
	linux61) files+=("$here/kernel/linux61.absent" "$here/kernel/linux61.config"); fns+=(modules) ;;
	arm64 | ppc64le) files=("$here/kernel/$1.config"); fns=(apply compile_cross cross "recipe_$1") ;;
	compat | iommufdtest | bench) files+=("$here/kernel/$1.config"); fns+=(from_legacy recipe_legacy) ;;
	esac
	(echo "$1"; cat "${files[@]}"; declare -f "${fns[@]}") | sha256sum | cut -c1-12
}

build() {
	local variant=$1
	declare -F "recipe_$variant" >/dev/null || die "unknown variant $variant (legacy, compat, linux61, iommufdtest, bench, arm64, ppc64le, headers, source)"
	local dir=$cache/build/$variant
	case $variant in linux61) source_tree 6.1 ;; *) source_tree 6.12 ;; esac
	local out=$cache/kernels/$kver-$variant-$(key "$variant")
	cross "$variant"
	[ -f "$out/$image" ] || lock # and look again: the run that held it may have built it
	if [ -f "$out/$image" ]; then echo "$variant $out/$image"; return; fi
	local t0=$SECONDS
	# A build gives way to whatever else runs on the machine: the e2e
	# boots run beside the kernels still being built, and their guests,
	# not the compiler, have timeouts.
	[ "$(nice)" -ge 10 ] || renice -n 10 -p $$ >/dev/null
	"recipe_$variant" "$dir"
	log "building $variant ($kver) in $dir with $jobs jobs"
	if [ "$image" = bzImage ]; then compile "$dir"; else compile_cross "$dir"; fi ||
		{ tail -n 40 "$dir/build.log" >&2; die "build of $variant failed; log: $dir/build.log"; }
	mkdir -p "$out"
	modules "$dir" "$out" || { tail -n 40 "$dir/build.log" >&2; die "modules of $variant failed; log: $dir/build.log"; }
	cp "$dir/.config" "$out/config"
	cp "$dir/$image_path" "$out/$image.tmp" && mv "$out/$image.tmp" "$out/$image"
	log "built $variant in $((SECONDS - t0)) s"
	echo "$variant $out/$image"
}

# headers: the host's uapi headers (the ABI tests compile C against them
# with the host's compiler). A cross variant built earlier in this run
# exported its ARCH; powerpc's asm/ioctl.h encodes every request
# differently, so it must not leak in here.
headers() {
	source_tree 6.12
	cross headers
	local inc=$cache/headers/$kver-host
	[ -f "$inc/.done" ] || lock
	if [ ! -f "$inc/.done" ]; then
		rm -rf "$inc"
		make -s -C "$srcdir" O="$cache/build/headers" INSTALL_HDR_PATH="$inc" headers_install >&2
		touch "$inc/.done"
	fi
	echo "headers $inc/include"
}

[ $# -gt 0 ] || set -- legacy compat
for v in "$@"; do
	case $v in
	headers) headers ;;
	source) source_tree 6.12 && echo "source $srcdir" ;;
	*) build "$v" ;;
	esac
done
