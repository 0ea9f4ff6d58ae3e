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
. "$(dirname "${BASH_SOURCE[0]}")/roots.sh"
ROOTS_NAME=trixie-minbase

cache=${1:-$ROOTS_CACHE}
root=$cache/trixie-minbase
STAMP="v1 trixie minbase"

need_root
lock_cache "$cache" .minbase.lock 1200

if stamp_is "$root" "$STAMP"; then
  echo "$root"
  exit 0
fi
need_debootstrap

mirror=$(debian_mirror)
log "building $root from $mirror (cold cache: a few minutes)"

new=$root.new
remove_root "$new"
t0=$(date +%s)
logged "$cache/minbase.log" debootstrap debootstrap_fast --variant=minbase trixie "$new" "$mirror" || exit 1
# debootstrap leaves the host's resolv.conf and hostname behind; users of the
# root copy in their own. Nothing else is changed: this is what a fresh
# minimal Debian has.
replace_root "$new" "$root" "$STAMP"
log "built in $(( $(date +%s) - t0 )) s"
echo "$root"
