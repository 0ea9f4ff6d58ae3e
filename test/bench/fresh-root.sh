#!/usr/bin/env bash
# Runs a command as root in a fresh Debian: a throwaway overlay over the
# pristine minbase root (test/bench/trixie-minbase.sh), in private PID and
# mount namespaces (test/fresh-debian.test.ts):
#
#   test/bench/fresh-root.sh ROOT RUNDIR COMMAND
#
# ROOT is never written: RUNDIR/upper takes every change. Calls with the same
# RUNDIR see each other's changes (one machine, several commands); dropping
# RUNDIR drops them all. COMMAND runs with bash -c in the root as root,
# with a login-like environment: HOME=/root, LANG=C.UTF-8, the standard PATH.
# The guest gets its own /proc, /sys (read-only), a minimal /dev (null, zero,
# full, random, urandom, tty, a private devpts, /dev/shm), tmpfs /tmp and
# /run, this machine's resolv.conf, and its CA bundle as /run/host-ca.crt
# (NODE_EXTRA_CA_CERTS and npm's cafile point at it: where outgoing TLS
# passes a local proxy, its CA is in there; the guest's own
# /etc/ssl/certs is left to the guest's ca-certificates package).
# NPM_CACHE_DIR, when set, is bind-mounted as the guest's ~/.npm (npm's
# download cache: packages are still installed by the guest's npm).
# APT_ARCHIVES_DIR, when set, holds .deb files kept between runs: they are
# hard-linked into the guest's /var/cache/apt/archives before COMMAND (apt
# then installs them without downloading) and new ones are kept after it.
# Everything left running in the namespace dies with it when COMMAND ends,
# or when this script is killed.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/roots.sh"
root=$1
run=$2
cmd=$3

if [ "${FRESH_STAGE:-outer}" = outer ]; then
  FRESH_STAGE=inner exec unshare --pid --fork --kill-child --mount --propagation private "$0" "$root" "$run" "$cmd"
fi

# PID 1 of the namespace from here on: it outlives COMMAND and reaps orphans.
m=$run/root
mkdir -p "$run/upper"
debs=$run/upper/var/cache/apt/archives
if [ -n "${APT_ARCHIVES_DIR:-}" ]; then
  mkdir -p "$APT_ARCHIVES_DIR" "$debs"
  find "$APT_ARCHIVES_DIR" -maxdepth 1 -name '*.deb' -exec cp -l -n -t "$debs" {} + 2>/dev/null || true
fi
mount_overlay "$root" "$run" "$m"
mount -t proc proc "$m/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$m/sys"
mount -t tmpfs -o mode=0755,nosuid,size=64m dev "$m/dev"
mknod -m 0666 "$m/dev/null" c 1 3
mknod -m 0666 "$m/dev/zero" c 1 5
mknod -m 0666 "$m/dev/full" c 1 7
mknod -m 0666 "$m/dev/random" c 1 8
mknod -m 0666 "$m/dev/urandom" c 1 9
mknod -m 0666 "$m/dev/tty" c 5 0
mkdir "$m/dev/pts" "$m/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$m/dev/pts"
ln -s pts/ptmx "$m/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev shm "$m/dev/shm"
ln -s /proc/self/fd "$m/dev/fd"
ln -s /proc/self/fd/0 "$m/dev/stdin"
ln -s /proc/self/fd/1 "$m/dev/stdout"
ln -s /proc/self/fd/2 "$m/dev/stderr"
mount -t tmpfs -o mode=1777,nosuid,nodev tmp "$m/tmp"
mount -t tmpfs -o mode=0755,nosuid,nodev run "$m/run"
mkdir -p "$m/run/lock"
copy_resolv "$m"
cp /etc/ssl/certs/ca-certificates.crt "$m/run/host-ca.crt" 2>/dev/null || true
bind_npm_cache "$m"

env=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root USER=root LOGNAME=root
     SHELL=/bin/bash LANG=C.UTF-8 TERM=dumb)
if [ -s "$m/run/host-ca.crt" ]; then
  env+=(NODE_EXTRA_CA_CERTS=/run/host-ca.crt NPM_CONFIG_CAFILE=/run/host-ca.crt)
fi
# The caller's LIVE_SPEAKER_* settings (e.g. which tests cannot nest in here).
while IFS= read -r kv; do env+=("$kv"); done < <(env | grep -E '^LIVE_SPEAKER_SKIP_[A-Z_]+=' || true)

set +e
chroot "$m" /usr/bin/env -i "${env[@]}" /bin/bash -c "$cmd" </dev/null
rc=$?
if [ -n "${APT_ARCHIVES_DIR:-}" ] && [ -d "$debs" ]; then
  find "$debs" -maxdepth 1 -name '*.deb' -exec cp -l -n -t "$APT_ARCHIVES_DIR" {} + 2>/dev/null || true
fi
exit "$rc"
