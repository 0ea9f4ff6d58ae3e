#!/usr/bin/env bash
# A pristine Debian 13 (trixie) root: `debootstrap --variant=minbase` and
# nothing else (no Node.js, no compiler, no ca-certificates). Made once and
# cached OUTSIDE the repo; never written afterwards:
#  - test/fresh-debian.test.ts runs the README's commands in a throwaway
#    overlay over it (a newcomer's fresh Debian);
#  - test/bench/trixie-root.sh copies it to make the systemd root (so one
#    debootstrap serves both).
#
#   test/bench/trixie-minbase.sh [CACHE_DIR]   prints the root's path on stdout
#
# CACHE_DIR defaults to $LIVE_SPEAKER_TEST_CACHE or /var/cache/live-speaker-test.
# Rebuilt when STAMP changes; concurrent callers wait on a lock. Needs root,
# debootstrap, and the Debian mirror named in this machine's apt sources.
set -euo pipefail

cache=${1:-${LIVE_SPEAKER_TEST_CACHE:-/var/cache/live-speaker-test}}
root=$cache/trixie-minbase
STAMP="v1 trixie minbase"

log() { echo "trixie-minbase: $*" >&2; }

[ "$(id -u)" = 0 ] || { log "needs root"; exit 2; }

mkdir -p "$cache"
exec 9>"$cache/.minbase.lock"
flock -w 1200 9 || { log "could not lock $cache/.minbase.lock"; exit 1; }

if [ -f "$root/.stamp" ] && [ "$(cat "$root/.stamp")" = "$STAMP" ]; then
  echo "$root"
  exit 0
fi
command -v debootstrap >/dev/null || { log "debootstrap not installed (apt-get install debootstrap)"; exit 2; }

# The Debian mirror this machine already uses (deb822 .sources or one-line lists).
mirror=$(
  { grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}'
    grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print $2}'
  } | grep -E '/debian/?$' | head -n1 || true
)
mirror=${mirror:-http://deb.debian.org/debian}
log "building $root from $mirror (cold cache: a few minutes)"

new=$root.new
rm -rf --one-file-system "$new"
t0=$(date +%s)
eatmydata=()
command -v eatmydata >/dev/null && eatmydata=(eatmydata)
"${eatmydata[@]}" debootstrap --variant=minbase trixie "$new" "$mirror" >"$cache/minbase.log" 2>&1 \
  || { log "debootstrap failed, see $cache/minbase.log:"; tail -n 20 "$cache/minbase.log" >&2; exit 1; }
# debootstrap leaves the host's resolv.conf and hostname behind; users of the
# root copy in their own. Nothing else is changed: this is what a fresh
# minimal Debian has.
echo "$STAMP" >"$new/.stamp"
rm -rf --one-file-system "$root"
mv "$new" "$root"
log "built in $(( $(date +%s) - t0 )) s"
echo "$root"
