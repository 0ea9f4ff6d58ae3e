#!/usr/bin/env bash
# A Debian 13 (trixie) root to boot systemd in (test/systemd.test.ts), made
# with debootstrap once and cached OUTSIDE the repo. The tests never write
# into it: each boot mounts an overlay over it.
#
#   test/bench/trixie-root.sh [CACHE_DIR]   prints the root's path on stdout
#
# CACHE_DIR defaults to $LIVE_SPEAKER_TEST_CACHE or /var/cache/live-speaker-test.
# The root is rebuilt when STAMP below changes (edit it when the package list
# changes); concurrent callers wait on a lock. Needs root, debootstrap, and
# the Debian mirror named in this machine's apt sources.
set -euo pipefail

cache=${1:-${LIVE_SPEAKER_TEST_CACHE:-/var/cache/live-speaker-test}}
root=$cache/trixie-root
# Everything scripts/install.sh installs, preinstalled, so that the install
# inside the test needs no apt download (it still checks each package).
PKGS="nodejs npm node-gyp libnode-dev alsa-utils libasound2-dev libasound2-plugins libsystemd-dev build-essential python3 make g++ ca-certificates procps"
STAMP="v1 trixie minbase systemd systemd-sysv dbus | $PKGS"

log() { echo "trixie-root: $*" >&2; }

[ "$(id -u)" = 0 ] || { log "needs root"; exit 2; }
command -v debootstrap >/dev/null || { log "debootstrap not installed (apt-get install debootstrap)"; exit 2; }

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock -w 900 9 || { log "could not lock $cache/.lock"; exit 1; }

if [ -f "$root/.stamp" ] && [ "$(cat "$root/.stamp")" = "$STAMP" ]; then
  echo "$root"
  exit 0
fi

# The Debian mirror this machine already uses (deb822 .sources or one-line lists).
mirror=$(
  { grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}'
    grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print $2}'
  } | grep -E '/debian/?$' | head -n1 || true
)
mirror=${mirror:-http://deb.debian.org/debian}
log "building $root from $mirror (cold cache: a few minutes)"

new=$root.new
rm -rf "$new"
t0=$(date +%s)
eatmydata=()
command -v eatmydata >/dev/null && eatmydata=(eatmydata)
"${eatmydata[@]}" debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus trixie "$new" "$mirror" >"$cache/debootstrap.log" 2>&1 \
  || { log "debootstrap failed, see $cache/debootstrap.log:"; tail -n 20 "$cache/debootstrap.log" >&2; exit 1; }

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
unshare --mount --propagation private bash -euo pipefail -c '
  new=$1; shift
  mount -t proc proc "$new/proc"
  mount --rbind /dev "$new/dev"
  export DEBIAN_FRONTEND=noninteractive LC_ALL=C
  chroot "$new" apt-get update -q
  # npm has been seen half-configured straight after install: -f install mends it.
  chroot "$new" apt-get install -y -q --no-install-recommends "$@" || chroot "$new" apt-get -f install -y -q
  chroot "$new" apt-get -f install -y -q
  chroot "$new" apt-get clean
' _ "$new" $PKGS >>"$cache/debootstrap.log" 2>&1 \
  || { log "apt-get in the new root failed, see $cache/debootstrap.log:"; tail -n 30 "$cache/debootstrap.log" >&2; exit 1; }
rm -f "$new/usr/sbin/policy-rc.d"
# A machine-id of its own (systemd wants one), no getty on the console.
: >"$new/etc/machine-id"
chroot "$new" systemd-machine-id-setup >/dev/null 2>&1 || true
chroot "$new" systemctl mask getty@tty1.service serial-getty@console.service console-getty.service >/dev/null 2>&1 || true
echo "$STAMP" >"$new/.stamp"
rm -rf "$root"
mv "$new" "$root"
log "built in $(( $(date +%s) - t0 )) s"
echo "$root"
