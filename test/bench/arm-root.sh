#!/usr/bin/env bash
# A Debian 13 (trixie) root of a Raspberry Pi architecture, run on this x86
# machine through qemu-user (binfmt_misc), for test/arm.test.ts. Made with
# debootstrap once and cached OUTSIDE the repo; the test never writes into
# it (test/bench/in-root.sh mounts an overlay over it).
#
#   test/bench/arm-root.sh ARCH [CACHE_DIR]   prints the root's path on stdout
#
# ARCH is a Debian architecture: arm64 (64-bit Raspberry Pi OS) or armhf
# (32-bit Raspberry Pi OS). CACHE_DIR defaults to $LIVE_SPEAKER_TEST_CACHE or
# /var/cache/live-speaker-test; the root is CACHE_DIR/ARCH-root. It is rebuilt
# when STAMP below changes; concurrent callers wait on a lock.
#
# On top of it, every package of scripts/deps.sh's runtime and demo groups
# (the same list install.sh and demo.sh install; a package added there
# follows here) that the root lacks is installed once into a layer cached
# beside it, CACHE_DIR/ARCH-pkgs-HASH, keyed by that list: then what is
# printed is an overlay lowerdir, "LAYER:ROOT", which test/bench/in-root.sh
# mounts as it mounts a plain root. The root itself is never modified (other
# runs may have it mounted), and a list change costs one emulated apt-get
# install of the new packages, not a new debootstrap. Needs root,
# debootstrap, qemu-user-static and binfmt-support (registers the qemu
# interpreter itself), and the Debian mirror named in this machine's apt
# sources. Everything in the root runs emulated: expect 10-20 minutes cold.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/roots.sh"

arch=${1:?usage: arm-root.sh arm64|armhf [CACHE_DIR]}
cache=${2:-$ROOTS_CACHE}
qemu=$(qemu_of "$arch") || { echo "arm-root: unknown architecture $arch (arm64 or armhf)" >&2; exit 2; }
root=$cache/$arch-root
# What scripts/install.sh installs on a Pi (Debian's nodejs and npm, node-gyp
# building against libnode-dev's headers, the addons' -dev packages), so
# that npm ci in the test needs no apt download.
PKGS="nodejs npm node-gyp libnode-dev alsa-utils libasound2-dev libasound2-plugins libsystemd-dev python3 make g++ ca-certificates procps"
STAMP="v1 trixie $arch minbase | $PKGS"
ROOTS_NAME="arm-root($arch)"

need_root
need_debootstrap
ensure_binfmt "$qemu" || exit 2
lock_cache "$cache" ".lock-$arch" 3600

deps=$(dirname "${BASH_SOURCE[0]}")/../../scripts/deps.sh
# scripts/deps.sh's runtime and demo packages that ROOT's dpkg database does
# not have installed (read here, natively: no emulation needed to check).
missing_in() {
  local want
  want=$(bash "$deps" --list demo | sort -u) || { log "scripts/deps.sh --list demo failed"; return 1; }
  awk '/^Package:/ { p = $2 } /^Status:/ && $4 == "installed" { print p }' "$1/var/lib/dpkg/status" | sort -u \
    | comm -23 <(printf '%s\n' $want) -
}
# apt-get install PKG... into an overlay (NEW/upper) over ROOT; run through in_private_mounts.
layer_install() {
  local root=$1 new=$2
  shift 2
  local m=$new/m
  mount_overlay "$root" "$new" "$m"
  mount -t tmpfs tmpfs "$m/tmp"
  no_daemons "$m"
  copy_resolv "$m"
  apt_install --clean "$m" "$@"
  rm -f "$m/usr/sbin/policy-rc.d"
}
export -f layer_install
# The layer with the missing packages (built here once, under the lock), or
# the root alone when nothing is missing; prints the lowerdir.
print_root() {
  local missing key layer new
  missing=$(missing_in "$root" | tr '\n' ' ' | sed 's/ $//')
  if [ -z "$missing" ]; then echo "$root"; return 0; fi
  key=$(printf '%s\n%s\n' "$STAMP" "$missing" | sha256sum | cut -c1-12)
  layer=$cache/$arch-pkgs-$key
  if [ -f "$layer/.stamp" ]; then echo "$layer/upper:$root"; return 0; fi
  log "installing into a layer over the root what scripts/deps.sh lists and it lacks: $missing"
  new=$layer.new
  rm -rf --one-file-system "$new"
  binfmt_guard "$qemu"
  local guard=$binfmt_guard_pid t0
  t0=$(date +%s)
  # shellcheck disable=SC2086 # $missing: one package a word
  logged "$cache/pkgs-$arch.log" "apt-get in the layer" in_private_mounts layer_install "$root" "$new" $missing \
    || { kill "$guard" 2>/dev/null; return 1; }
  kill "$guard" 2>/dev/null || true
  rm -rf "$new/work" "$new/m"
  local still
  still=$(missing_in "$new/upper" | tr '\n' ' ' | sed 's/ $//')
  [ -z "$still" ] || { log "still missing after apt-get: $still (see $cache/pkgs-$arch.log)"; return 1; }
  printf '%s\n%s\n' "$STAMP" "$missing" >"$new/.stamp"
  mv "$new" "$layer"
  log "layer built in $(( $(date +%s) - t0 )) s: $layer"
  echo "$layer/upper:$root"
}

if stamp_is "$root" "$STAMP"; then
  print_root
  exit $?
fi

mirror=$(debian_mirror)
log "building $root from $mirror (cold cache: 10-20 minutes under emulation)"

new=$root.new
# A failed debootstrap leaves its proc/sys mounts inside: remove_root unmounts them.
remove_root "$new"
# Another root being built on this machine (e.g. test/bench/trixie-root.sh:
# systemd's trigger runs systemd-binfmt when python3 lands, which drops every
# registration) can unregister qemu mid-build: a guard re-registers it.
binfmt_guard "$qemu"
guard=$binfmt_guard_pid
trap 'kill $guard 2>/dev/null || true' EXIT
t0=$(date +%s)
logged "$cache/debootstrap-$arch.log" debootstrap debootstrap_fast --arch="$arch" --variant=minbase trixie "$new" "$mirror" || exit 1
t1=$(date +%s)
log "debootstrap took $((t1 - t0)) s"

no_daemons "$new"
# Nothing installed in the root may touch binfmt_misc, which is this machine's
# (a postinst running update-binfmts or systemd-binfmt has been seen to drop
# the qemu registrations, after which every binary in the root fails with
# "Exec format error"): divert both to true before apt runs.
for tool in /usr/sbin/update-binfmts /usr/lib/systemd/systemd-binfmt; do
  chroot "$new" dpkg-divert --local --rename --divert "$tool.distrib" --add "$tool" >/dev/null
  ln -sf /bin/true "$new$tool"
done
copy_resolv "$new"
# A throwaway test root: no fsync per file, no translations, no docs.
quiet_apt "$new"
printf 'path-exclude=/usr/share/doc/*\npath-exclude=/usr/share/man/*\npath-exclude=/usr/share/locale/*\n' \
  >"$new/etc/dpkg/dpkg.cfg.d/no-docs"
# shellcheck disable=SC2086 # $PKGS: one package a word
logged -a "$cache/debootstrap-$arch.log" "apt-get in the new root" in_private_mounts apt_install --clean "$new" $PKGS || exit 1
rm -f "$new/usr/sbin/policy-rc.d"
ensure_binfmt "$qemu" || { log "the qemu registration was lost while building"; exit 1; }
got=$(chroot "$new" node -p 'process.arch + " " + process.version' 2>&1) || { log "node does not run in the root: $got"; exit 1; }
log "apt-get took $(( $(date +%s) - t1 )) s; node in the root: $got"
replace_root "$new" "$root" "$STAMP"
log "built in $(( $(date +%s) - t0 )) s"
print_root
