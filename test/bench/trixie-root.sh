#!/usr/bin/env bash
# A Debian 13 (trixie) root to boot systemd in (test/systemd.test.ts): a copy
# of the pristine minbase root (test/bench/trixie-minbase.sh, one debootstrap
# for both) with systemd and what scripts/install.sh installs added, cached
# OUTSIDE the repo. The tests never write into it: each boot mounts an
# overlay over it.
#
#   test/bench/trixie-root.sh [CACHE_DIR]   prints the root's path on stdout
#
# CACHE_DIR defaults to $LIVE_SPEAKER_TEST_CACHE or /var/cache/live-speaker-test.
# The root is rebuilt when STAMP below changes (it holds the package list,
# read from scripts/deps.sh) or the minbase root is rebuilt; concurrent
# callers wait on a lock. Needs root, debootstrap (for a cold cache), and the
# Debian mirror named in this machine's apt sources.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
cache=${1:-${LIVE_SPEAKER_TEST_CACHE:-/var/cache/live-speaker-test}}
# Not trixie-root: that name holds the older, separately debootstrapped root,
# which other checkouts may still be booting.
root=$cache/trixie-systemd
# Everything scripts/install.sh installs (deps.sh's runtime group, and
# Debian's Node.js), preinstalled, so that the install inside the test needs
# no apt download (it still checks each package).
PKGS=$(bash "$here/../../scripts/deps.sh" --list runtime | tr '\n' ' ')

log() { echo "trixie-root: $*" >&2; }

[ "$(id -u)" = 0 ] || { log "needs root"; exit 2; }

base=$(bash "$here/trixie-minbase.sh" "$cache") || { log "no minbase root"; exit 1; }
STAMP="v2 $(cat "$base/.stamp") + systemd systemd-sysv dbus | $PKGS"

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock -w 900 9 || { log "could not lock $cache/.lock"; exit 1; }

if [ -f "$root/.stamp" ] && [ "$(cat "$root/.stamp")" = "$STAMP" ]; then
  echo "$root"
  exit 0
fi

log "building $root from $base"
new=$root.new
rm -rf --one-file-system "$new"
t0=$(date +%s)
cp -a --reflink=auto "$base" "$new"
rm -f "$new/.stamp"

# apt inside the new root, in a private mount namespace with /proc and /dev.
cat >"$new/usr/sbin/policy-rc.d" <<'EOF'
#!/bin/sh
exit 101
EOF
chmod +x "$new/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$new/etc/resolv.conf" 2>/dev/null || true
# A throwaway test root: no fsync per file (dpkg is several times faster), no translations.
echo force-unsafe-io >"$new/etc/dpkg/dpkg.cfg.d/unsafe-io"
echo 'Acquire::Languages "none";' >"$new/etc/apt/apt.conf.d/99no-translations"
# .deb files kept between builds (test/fresh-debian.test.ts installs the same ones).
debs=$cache/apt-archives
mkdir -p "$debs"
find "$debs" -maxdepth 1 -name '*.deb' -exec cp -l -n -t "$new/var/cache/apt/archives" {} + 2>/dev/null || true
unshare --mount --propagation private bash -euo pipefail -c '
  new=$1; shift
  mount -t proc proc "$new/proc"
  mount --rbind /dev "$new/dev"
  export DEBIAN_FRONTEND=noninteractive LC_ALL=C
  chroot "$new" apt-get update -q
  # npm has been seen half-configured straight after install: -f install mends it.
  chroot "$new" apt-get install -y -q --no-install-recommends "$@" || chroot "$new" apt-get -f install -y -q
  chroot "$new" apt-get -f install -y -q
' _ "$new" systemd systemd-sysv dbus $PKGS >"$cache/trixie-systemd.log" 2>&1 \
  || { log "apt-get in the new root failed, see $cache/trixie-systemd.log:"; tail -n 30 "$cache/trixie-systemd.log" >&2; exit 1; }
find "$new/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -exec cp -l -n -t "$debs" {} + 2>/dev/null || true
find "$new/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -delete
rm -f "$new/usr/sbin/policy-rc.d"
# A machine-id of its own (systemd wants one), no getty on the console.
: >"$new/etc/machine-id"
chroot "$new" systemd-machine-id-setup >/dev/null 2>&1 || true
chroot "$new" systemctl mask getty@tty1.service serial-getty@console.service console-getty.service >/dev/null 2>&1 || true
echo "$STAMP" >"$new/.stamp"
rm -rf --one-file-system "$root"
mv "$new" "$root"
log "built in $(( $(date +%s) - t0 )) s"
echo "$root"
