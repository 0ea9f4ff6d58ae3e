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
. "$(dirname "${BASH_SOURCE[0]}")/roots.sh"
ROOTS_NAME=trixie-root

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
cache=${1:-$ROOTS_CACHE}
# Not trixie-root: that name holds the older, separately debootstrapped root,
# which other checkouts may still be booting.
root=$cache/trixie-systemd
# Everything scripts/install.sh installs (deps.sh's runtime group, and
# Debian's Node.js), preinstalled, so that the install inside the test needs
# no apt download (it still checks each package).
PKGS=$(bash "$here/../../scripts/deps.sh" --list runtime | tr '\n' ' ')

need_root

base=$(bash "$here/trixie-minbase.sh" "$cache") || { log "no minbase root"; exit 1; }
STAMP="v2 $(cat "$base/.stamp") + systemd systemd-sysv dbus | $PKGS"

lock_cache "$cache" .lock 900

if stamp_is "$root" "$STAMP"; then
  echo "$root"
  exit 0
fi

log "building $root from $base"
new=$root.new
remove_root "$new"
t0=$(date +%s)
cp -a --reflink=auto "$base" "$new"
rm -f "$new/.stamp"

# apt inside the new root, in a private mount namespace with /proc and /dev.
no_daemons "$new"
copy_resolv "$new"
quiet_apt "$new"
# .deb files kept between builds (test/fresh-debian.test.ts installs the same ones).
debs=$cache/apt-archives
mkdir -p "$debs"
find "$debs" -maxdepth 1 -name '*.deb' -exec cp -l -n -t "$new/var/cache/apt/archives" {} + 2>/dev/null || true
# shellcheck disable=SC2086 # $PKGS: one package a word
logged "$cache/trixie-systemd.log" "apt-get in the new root" in_private_mounts apt_install "$new" systemd systemd-sysv dbus $PKGS || exit 1
find "$new/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -exec cp -l -n -t "$debs" {} + 2>/dev/null || true
find "$new/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -delete
rm -f "$new/usr/sbin/policy-rc.d"
# A machine-id of its own (systemd wants one), no getty on the console.
: >"$new/etc/machine-id"
chroot "$new" systemd-machine-id-setup >/dev/null 2>&1 || true
chroot "$new" systemctl mask getty@tty1.service serial-getty@console.service console-getty.service >/dev/null 2>&1 || true
replace_root "$new" "$root" "$STAMP"
log "built in $(( $(date +%s) - t0 )) s"
echo "$root"
