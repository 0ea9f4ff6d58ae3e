#!/usr/bin/env bash
# Runs one command inside a cached Debian root (test/bench/arm-root.sh, or
# any other) without writing into it: in a private mount namespace, an
# overlay (RUNDIR/upper) takes every change and is dropped with RUNDIR.
#
#   test/bench/in-root.sh ROOT RUNDIR [BIND_DIR...] -- COMMAND [ARG...]
#
# Each BIND_DIR (a host directory: the simulated sound card's, the app under
# test) appears at the same path inside; a BIND_DIR written SRC=DST puts the
# host file or directory SRC at DST inside instead (after /proc is mounted, so
# a fake /proc/cpuinfo can be put over the real one). ROOT may be an overlay
# lowerdir list, "LAYER:ROOT", as test/bench/arm-root.sh prints. The command runs as root in the
# root's own userland (under qemu-user when the root is of another
# architecture), as this script's own process (a signal sent to this
# script's pid reaches the command), with a clean environment plus what the caller puts in front
# of it with `env`; this machine's CA bundle is copied in (npm reaches the
# registry through it; NODE_EXTRA_CA_CERTS points at it). With NPM_CACHE_DIR
# set, that host directory is the root's ~/.npm (npm's download cache kept
# between runs). The overlay stays in RUNDIR, so consecutive calls see each
# other's changes.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/roots.sh"
root=$1
run=$2
shift 2
binds=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do binds+=("$1"); shift; done
[ "${1:-}" = -- ] || { echo "usage: in-root.sh ROOT RUNDIR [BIND_DIR...] -- COMMAND [ARG...]" >&2; exit 2; }
shift

if [ "${IN_ROOT_STAGE:-outer}" = outer ]; then
  # binfmt_misc is this machine's: a package install in some other root (a
  # postinst running update-binfmts or systemd-binfmt) can drop the qemu
  # registrations at any moment, and every emulated exec then fails with
  # "Exec format error". While the command runs, a guard puts back any qemu
  # registration that was there at the start.
  regs=$(cd "$binfmt" 2>/dev/null && ls -d qemu-* 2>/dev/null || true)
  if [ -n "$regs" ] && command -v update-binfmts >/dev/null; then
    me=$$
    ( while kill -0 "$me" 2>/dev/null; do
        for r in $regs; do [ -e "$binfmt/$r" ] || update-binfmts --enable "$r" >/dev/null 2>&1 || true; done
        sleep 0.2
      done ) </dev/null >/dev/null 2>&1 &
  fi
  IN_ROOT_STAGE=inner exec unshare --mount --propagation private "$0" "$root" "$run" "${binds[@]}" -- "$@"
fi

m=$run/root
mount_overlay "$root" "$run" "$m"
mount_proc_dev "$m"
mount -t tmpfs tmpfs "$m/tmp"
copy_resolv "$m"
cp /etc/ssl/certs/ca-certificates.crt "$m/etc/ssl/certs/ca-certificates.crt"
for d in "${binds[@]}"; do bind_in "$m" "$d"; done
bind_npm_cache "$m"
exec chroot "$m" /usr/bin/env -i \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TERM=dumb \
  NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt "$@"
