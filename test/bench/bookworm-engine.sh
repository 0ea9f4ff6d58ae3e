#!/usr/bin/env bash
# Does the echo canceller's engine run on Debian 12 (bookworm) for a
# Raspberry Pi architecture? test/bookworm.test.ts runs it for arm64 and
# armhf; test/arm.test.ts checks the same (and much more) in trixie roots.
# A cold root is ~2 min per arch here (mmdebstrap, dpkg emulated).
#
#   test/bench/bookworm-engine.sh arm64|armhf [CACHE_DIR]
#
# Builds (once, cached in CACHE_DIR/bookworm-ARCH-engine) a bookworm root with
# mmdebstrap holding only nodejs and libspeexdsp1, puts this checkout's koffi
# and koffi's prebuilt binary for ARCH (npm pack, the version koffi names) in
# a scratch directory inside it, and makes the calls src/audio/aec/speex.ts
# makes: load libspeexdsp.so.1, init an echo state, cancel one frame. Needs
# root, mmdebstrap, qemu-user-static with binfmt, and the node_modules of an
# `npm ci` on this machine. Concurrent callers wait on a lock.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/roots.sh"
arch=${1:?usage: bookworm-engine.sh arm64|armhf [CACHE_DIR]}
cache=${2:-$ROOTS_CACHE}
ROOTS_NAME="bookworm-engine($arch)"
case "$arch" in arm64) node_arch=arm64 ;; armhf) node_arch=arm ;; *) echo "unknown arch $arch" >&2; exit 2 ;; esac
here=$(cd "$(dirname "$0")/../.." && pwd)
qemu=$(qemu_of "$arch")
binfmt_enabled "$qemu" || update-binfmts --enable "qemu-$qemu" >&2 \
  || { log "qemu-$qemu is not registered in binfmt_misc (apt-get install qemu-user-static binfmt-support)"; exit 2; }
mirror=$(debian_mirror)
root=$cache/bookworm-$arch-engine
STAMP="v1 bookworm $arch nodejs libspeexdsp1"
# One caller at a time per arch: the build (root.new) and the check's scratch
# directory inside the root are shared; a second caller waits (held until exit).
lock_cache "$cache" ".lock-bookworm-$arch" 1200
if ! stamp_is "$root" "$STAMP"; then
  remove_root "$root.new"
  t0=$(date +%s)
  logged "$cache/bookworm-$arch-engine.log" mmdebstrap \
    mmdebstrap --mode=root --variant=apt --architectures="$arch" --include=nodejs,libspeexdsp1 \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    bookworm "$root.new" "$mirror" || exit 1
  replace_root "$root.new" "$root" "$STAMP"
  log "root built in $(( $(date +%s) - t0 )) s"
fi
app=$root/tmp/engine-check
rm -rf "$app"; mkdir -p "$app/node_modules/@koromix"
cp -a "$here/node_modules/koffi" "$app/node_modules/koffi"
ver=$(node -p "require('$here/node_modules/koffi/package.json').version")
( cd "$app" && npm pack --silent "@koromix/koffi-linux-$node_arch@$ver" >/dev/null \
  && mkdir "node_modules/@koromix/koffi-linux-$node_arch" \
  && tar -xzf "koromix-koffi-linux-$node_arch-$ver.tgz" -C "node_modules/@koromix/koffi-linux-$node_arch" --strip-components=1 )
echo "$ROOTS_NAME: $(chroot "$root" dpkg-query -W -f '${Package} ${Version} ${Architecture}, ' libc6 libspeexdsp1 nodejs)"
# shellcheck disable=SC2016 # $1 is expanded by the root's bash
chroot "$root" bash -c 'cd /tmp/engine-check && node -e "$1"' _ "$(cat "$here/test/bench/speex-frame.cjs")"
