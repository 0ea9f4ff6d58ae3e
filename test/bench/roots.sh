# shellcheck shell=bash
# What the Debian root scripts of test/bench share, sourced by each of them
# (arm-root.sh, trixie-minbase.sh, trixie-root.sh, bookworm-engine.sh,
# in-root.sh, boot-systemd.sh, fresh-root.sh): logging, the cache and its
# locks, the mirror, debootstrap, the qemu/binfmt checks, apt-get inside a
# root, the mounts a guest gets. Nothing here runs when it is sourced but
# setting ROOTS_LIB and ROOTS_CACHE.
#
#   . "$(dirname "${BASH_SOURCE[0]}")/roots.sh"
#   ROOTS_NAME=my-script   # the prefix of every log line
#
# CACHE_DIR, where a script takes one, defaults to ROOTS_CACHE:
# $LIVE_SPEAKER_TEST_CACHE or /var/cache/live-speaker-test.

ROOTS_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/roots.sh
ROOTS_CACHE=${LIVE_SPEAKER_TEST_CACHE:-/var/cache/live-speaker-test}
ROOTS_NAME=${ROOTS_NAME:-roots}

log() { echo "$ROOTS_NAME: $*" >&2; }

need_root() { [ "$(id -u)" = 0 ] || { log "needs root"; exit 2; }; }

need_debootstrap() {
  command -v debootstrap >/dev/null || { log "debootstrap not installed (apt-get install debootstrap)"; exit 2; }
}

# lock_cache CACHE LOCKFILE SECONDS: holds CACHE/LOCKFILE (fd 9) until the
# script exits; concurrent builders of the same root wait here.
lock_cache() {
  mkdir -p "$1"
  exec 9>"$1/$2"
  flock -w "$3" 9 || { log "could not lock $1/$2"; exit 1; }
}

# stamp_is ROOT STAMP: ROOT is built and was built for STAMP.
stamp_is() { [ -f "$1/.stamp" ] && [ "$(cat "$1/.stamp")" = "$2" ]; }

# The Debian mirror this machine already uses (deb822 .sources or one-line lists).
debian_mirror() {
  local mirror
  mirror=$(
    { grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}'
      grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print $2}'
    } | grep -E '/debian/?$' | head -n1 || true
  )
  echo "${mirror:-http://deb.debian.org/debian}"
}

# logged [-a] LOGFILE WHAT COMMAND...: COMMAND's output goes to LOGFILE
# (appended with -a); when it fails, says so with the log's last lines.
logged() {
  local append=
  [ "$1" = -a ] && { append=1; shift; }
  local file=$1 what=$2 rc=0
  shift 2
  if [ -n "$append" ]; then "$@" >>"$file" 2>&1 || rc=$?; else "$@" >"$file" 2>&1 || rc=$?; fi
  [ "$rc" = 0 ] && return 0
  log "$what failed, see $file:"
  tail -n 30 "$file" >&2
  return 1
}

# debootstrap ARG...: under eatmydata where it is installed (no fsync per file).
debootstrap_fast() {
  local eatmydata=()
  command -v eatmydata >/dev/null && eatmydata=(eatmydata)
  "${eatmydata[@]}" debootstrap "$@"
}

# remove_root DIR: unmounts what a failed build left mounted in DIR, then removes it.
remove_root() {
  local m
  for m in $(awk -v r="$1" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/self/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf --one-file-system "$1"
}

# replace_root NEW ROOT STAMP: NEW, stamped, becomes ROOT.
replace_root() {
  echo "$3" >"$1/.stamp"
  remove_root "$2"
  mv "$1" "$2"
}

# --- qemu-user through binfmt_misc (the Raspberry Pi architectures) ---

binfmt=/proc/sys/fs/binfmt_misc

# qemu_of ARCH: qemu's name for a Debian architecture (arm64 -> aarch64, armhf -> arm).
qemu_of() {
  case "$1" in
    arm64) echo aarch64 ;;
    armhf) echo arm ;;
    *) return 1 ;;
  esac
}

binfmt_enabled() { grep -qx enabled "$binfmt/qemu-$1" 2>/dev/null; }

# ensure_binfmt QEMU: binfmt_misc mounted, and the qemu interpreter registered
# and enabled. A package's postinst in another root (or on this machine) may
# have removed the registration since the last run: check every time.
ensure_binfmt() {
  local qemu=$1
  [ -f "$binfmt/status" ] || mount -t binfmt_misc binfmt_misc "$binfmt" 2>/dev/null \
    || { log "cannot mount binfmt_misc on $binfmt"; return 1; }
  if ! binfmt_enabled "$qemu"; then
    command -v update-binfmts >/dev/null || { log "update-binfmts not found (apt-get install binfmt-support qemu-user-static)"; return 1; }
    update-binfmts --enable "qemu-$qemu" >&2 || { log "update-binfmts --enable qemu-$qemu failed (apt-get install qemu-user-static)"; return 1; }
  fi
  binfmt_enabled "$qemu" || { log "qemu-$qemu is not enabled in binfmt_misc"; return 1; }
  # The F flag: the kernel opened the interpreter when it was registered, so
  # it need not exist inside the root.
  grep -q '^flags:.*F' "$binfmt/qemu-$qemu" || { log "qemu-$qemu is registered without the F flag (qemu-user-static registers it with F)"; return 1; }
}

# binfmt_guard QEMU: in the background, puts the registration back whenever
# something drops it (another root being built on this machine can: systemd's
# trigger runs systemd-binfmt). Sets binfmt_guard_pid; the caller kills it.
binfmt_guard() {
  ( while sleep 0.5; do ensure_binfmt "$1" >/dev/null 2>&1 || true; done ) &
  binfmt_guard_pid=$!
}

# --- apt-get inside a root ---

# quiet_apt ROOT: a throwaway test root: no fsync per file (dpkg is several
# times faster), no translations.
quiet_apt() {
  echo force-unsafe-io >"$1/etc/dpkg/dpkg.cfg.d/unsafe-io"
  echo 'Acquire::Languages "none";' >"$1/etc/apt/apt.conf.d/99no-translations"
}

# no_daemons ROOT: package scripts start no services (policy-rc.d); `rm -f
# ROOT/usr/sbin/policy-rc.d` undoes it.
no_daemons() {
  printf '#!/bin/sh\nexit 101\n' >"$1/usr/sbin/policy-rc.d"
  chmod +x "$1/usr/sbin/policy-rc.d"
}

copy_resolv() { cp /etc/resolv.conf "$1/etc/resolv.conf" 2>/dev/null || true; }

# in_private_mounts FUNCTION ARG...: runs this library's FUNCTION (or one the
# caller exported with `export -f`) in a private mount namespace, so that
# every mount it makes is gone when it returns.
in_private_mounts() {
  ROOTS_NAME=$ROOTS_NAME unshare --mount --propagation private bash -euo pipefail -c 'lib=$1; shift; . "$lib"; "$@"' _ "$ROOTS_LIB" "$@"
}

# apt_install [--clean] ROOT PKG...: apt-get update and install PKG in ROOT,
# with ROOT's /proc and /dev mounted. Run it through in_private_mounts.
apt_install() {
  local clean=
  [ "$1" = --clean ] && { clean=1; shift; }
  local root=$1
  shift
  mount_proc_dev "$root"
  export DEBIAN_FRONTEND=noninteractive LC_ALL=C
  chroot "$root" apt-get update -q
  # npm has been seen half-configured straight after install: -f install mends it.
  chroot "$root" apt-get install -y -q --no-install-recommends "$@" || chroot "$root" apt-get -f install -y -q
  chroot "$root" apt-get -f install -y -q
  if [ -n "$clean" ]; then chroot "$root" apt-get clean; fi
}

# --- what a guest gets mounted ---

# mount_overlay LOWER DIR MNT: MNT shows LOWER (a directory or an overlay
# lowerdir list, "LAYER:ROOT"); every change goes to DIR/upper.
mount_overlay() {
  mkdir -p "$2/upper" "$2/work" "$3"
  mount -t overlay overlay -o "lowerdir=$1,upperdir=$2/upper,workdir=$2/work" "$3"
}

# mount_proc_dev MNT: a /proc of MNT's own and this machine's /dev.
mount_proc_dev() {
  mount -t proc proc "$1/proc"
  mount --rbind /dev "$1/dev"
}

# bind_in MNT SPEC: a host directory (or file) at the same path inside MNT;
# SPEC written SRC=DST puts SRC at DST inside instead.
bind_in() {
  local m=$1 src=${2%%=*} dst=${2#*=}
  if [ -d "$src" ]; then mkdir -p "$m$dst"; else [ -e "$m$dst" ] || touch "$m$dst"; fi
  mount --bind "$src" "$m$dst"
}

# bind_npm_cache MNT: with NPM_CACHE_DIR set, that host directory is the
# guest's ~/.npm (npm's download cache, kept between runs).
bind_npm_cache() {
  if [ -n "${NPM_CACHE_DIR:-}" ]; then
    mkdir -p "$NPM_CACHE_DIR" "$1/root/.npm"
    mount --bind "$NPM_CACHE_DIR" "$1/root/.npm"
  fi
}
