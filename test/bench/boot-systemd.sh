#!/usr/bin/env bash
# Boots systemd as PID 1 over a cached Debian root (test/bench/trixie-root.sh),
# in private PID, mount and cgroup namespaces (test-bench.md section 3):
#
#   test/bench/boot-systemd.sh ROOT RUNDIR [BIND_DIR...]
#
# ROOT is never written: an overlay (RUNDIR/upper) takes every change and is
# dropped with RUNDIR. Each BIND_DIR (a host directory, e.g. the simulated
# sound card's) appears at the same path inside. RUNDIR/src, if present, is
# the guest's /srv/live-speaker-src. systemd logs to the guest's journal.
# Ends when systemd (the namespace's PID 1) is killed; the caller kills it.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/roots.sh"
root=$1
run=$2
shift 2

if [ "${BOOT_STAGE:-outer}" = outer ]; then
  # A cgroup of our own (cgroup2), so the guest's systemd manages only its
  # subtree, and everything in it can be killed at once (cgroup.kill).
  cg2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)
  [ -n "$cg2" ] || { echo "boot-systemd: no cgroup2 hierarchy mounted" >&2; exit 2; }
  cg=$cg2/live-speaker-test-$$
  mkdir -p "$cg"
  echo "$cg" >"$run/cgroup"
  echo $$ >"$cg/cgroup.procs"
  BOOT_STAGE=inner exec unshare --cgroup --pid --fork --mount --propagation private "$0" "$root" "$run" "$@"
fi

m=$run/root
mount_overlay "$root" "$run" "$m"
mount -t proc proc "$m/proc"
mount --rbind /sys "$m/sys"
mount -t cgroup2 none "$m/sys/fs/cgroup"
mount --rbind /dev "$m/dev"
mount -t tmpfs tmpfs "$m/run"
mount -t tmpfs tmpfs "$m/tmp"
copy_resolv "$m"
# This machine's CA bundle too: where outgoing TLS passes a local proxy, its CA is in there.
cp /etc/ssl/certs/ca-certificates.crt "$m/etc/ssl/certs/ca-certificates.crt" 2>/dev/null || true
for d in "$@"; do bind_in "$m" "$d"; done
if [ -d "$run/src" ]; then bind_in "$m" "$run/src=/srv/live-speaker-src"; fi
# npm's download cache survives between runs (kept beside the cached root).
bind_npm_cache "$m"
exec chroot "$m" /lib/systemd/systemd --system --log-target=journal --show-status=no --log-level=info
