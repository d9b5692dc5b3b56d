#!/usr/bin/env bash
# kernel.sh VARIANT... : build (or reuse) the guest kernels and print, one per
# line, "VARIANT PATH-TO-bzImage". Variants: legacy, compat, linux61, headers.
#
#   legacy  Linux 6.12: tinyconfig + kernel/base.config (type1 container, iommufd, cdev)
#   compat  Linux 6.12: legacy + kernel/compat.config (/dev/vfio/vfio served by iommufd)
#   linux61 Linux 6.1 (no iommufd: 6.2; no device cdev: 6.6): base.config
#           without the options kernel/linux61.absent names, every other one checked
#   headers the sanitized uapi headers of the 6.12 tree (prints the include dir)
#
# Builds are cached under ${VFIOCTL_CACHE:-${XDG_CACHE_HOME:-~/.cache}/vfioctl}
# keyed by the kernel version and a hash of the fragments and of the build
# functions below, so a second run returns in well under a second. The cache
# is shared by every run on the machine: a lock makes a second kernel.sh wait
# for the first instead of building in (or deleting) the same tree. The
# sources are Debian's linux-source-6.12 and linux-source-6.1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${VFIOCTL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vfioctl}
jobs=${VFIOCTL_JOBS:-$(nproc)}

log() { printf 'kernel.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

mkdir -p "$cache"
exec 9>>"$cache/lock"
if ! flock -n 9; then
	log "waiting for another kernel.sh to release $cache/lock"
	flock 9
fi

# source SERIES: unpack Debian's linux-source-SERIES once; sets srcdir and kver.
source_tree() {
	local tarball
	tarball=$(ls /usr/src/linux-source-"$1".tar.* 2>/dev/null | head -n1 || true)
	[ -n "$tarball" ] || die "no /usr/src/linux-source-$1.tar.*: apt-get install linux-source-$1"
	srcdir=$cache/src/$(basename "$tarball" | sed 's/\.tar\..*//')
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

build() {
	local variant=$1
	local dir=$cache/build/$variant
	case $variant in linux61) source_tree 6.1 ;; *) source_tree 6.12 ;; esac
	local out=$cache/kernels/$kver-$key
	mkdir -p "$out"
	if [ -f "$out/$variant.bzImage" ]; then echo "$variant $out/$variant.bzImage"; return; fi
	local t0=$SECONDS
	case $variant in
	legacy)
		rm -rf "$dir" && mkdir -p "$dir"
		make -s -C "$srcdir" O="$dir" tinyconfig >/dev/null
		apply "$dir" "$here/kernel/base.config"
		;;
	linux61)
		rm -rf "$dir" && mkdir -p "$dir"
		make -s -C "$srcdir" O="$dir" tinyconfig >/dev/null
		grep -v -x -f <(sed 's/$/=.*/' "$here/kernel/linux61.absent" | grep -v '^#') "$here/kernel/base.config" >"$dir/fragment.config"
		apply "$dir" "$dir/fragment.config"
		;;
	compat)
		# Start from the legacy build tree so only what the config change
		# touches is rebuilt (about 30 s instead of a full build).
		build legacy >/dev/null
		rm -rf "$dir" && cp -a "$cache/build/legacy" "$dir"
		apply "$dir" "$here/kernel/base.config" "$here/kernel/compat.config"
		;;
	*) die "unknown variant $variant (legacy, compat, headers)" ;;
	esac
	log "building $variant ($kver) in $dir with $jobs jobs"
	make -s -C "$srcdir" O="$dir" -j"$jobs" bzImage >"$dir/build.log" 2>&1 || { tail -n 40 "$dir/build.log" >&2; die "build of $variant failed; log: $dir/build.log"; }
	cp "$dir/.config" "$out/$variant.config"
	cp "$dir/arch/x86/boot/bzImage" "$out/$variant.bzImage.tmp" && mv "$out/$variant.bzImage.tmp" "$out/$variant.bzImage"
	log "built $variant in $((SECONDS - t0)) s"
	echo "$variant $out/$variant.bzImage"
}

headers() {
	source_tree 6.12
	local inc=$cache/headers/$kver
	if [ ! -f "$inc/.done" ]; then
		rm -rf "$inc"
		make -s -C "$srcdir" O="$cache/build/headers" INSTALL_HDR_PATH="$inc" headers_install >&2
		touch "$inc/.done"
	fi
	echo "headers $inc/include"
}

key=$( (cat "$here/kernel/base.config" "$here/kernel/compat.config" "$here/kernel/linux61.absent"; declare -f apply build) | sha256sum | cut -c1-12)

[ $# -gt 0 ] || set -- legacy compat
for v in "$@"; do
	case $v in headers) headers ;; *) build "$v" ;; esac
done
