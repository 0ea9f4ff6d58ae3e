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
# `npm ci` on this machine.
set -euo pipefail
arch=${1:?usage: bookworm-engine.sh arm64|armhf [CACHE_DIR]}
cache=${2:-${LIVE_SPEAKER_TEST_CACHE:-/var/cache/live-speaker-test}}
case "$arch" in arm64) node_arch=arm64 ;; armhf) node_arch=arm ;; *) echo "unknown arch $arch" >&2; exit 2 ;; esac
here=$(cd "$(dirname "$0")/../.." && pwd)
qemu=$([ "$arch" = arm64 ] && echo aarch64 || echo arm)
grep -qx enabled "/proc/sys/fs/binfmt_misc/qemu-$qemu" 2>/dev/null || update-binfmts --enable "qemu-$qemu" >&2 \
  || { echo "bookworm-engine($arch): qemu-$qemu is not registered in binfmt_misc (apt-get install qemu-user-static binfmt-support)" >&2; exit 2; }
# The Debian mirror this machine already uses (as test/bench/arm-root.sh finds it).
mirror=$(
  { grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}'
    grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print $2}'
  } | grep -E '/debian/?$' | head -n1 || true
)
mirror=${mirror:-http://deb.debian.org/debian}
root=$cache/bookworm-$arch-engine
STAMP="v1 bookworm $arch nodejs libspeexdsp1"
if [ "$(cat "$root/.stamp" 2>/dev/null)" != "$STAMP" ]; then
  rm -rf --one-file-system "$root.new"
  t0=$(date +%s)
  mmdebstrap --mode=root --variant=apt --architectures="$arch" --include=nodejs,libspeexdsp1 \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    bookworm "$root.new" "$mirror" >"$cache/bookworm-$arch-engine.log" 2>&1 \
    || { echo "mmdebstrap failed, see $cache/bookworm-$arch-engine.log" >&2; tail -n 20 "$cache/bookworm-$arch-engine.log" >&2; exit 1; }
  echo "$STAMP" >"$root.new/.stamp"
  rm -rf --one-file-system "$root"; mv "$root.new" "$root"
  echo "bookworm-engine($arch): root built in $(( $(date +%s) - t0 )) s" >&2
fi
app=$root/tmp/engine-check
rm -rf "$app"; mkdir -p "$app/node_modules/@koromix"
cp -a "$here/node_modules/koffi" "$app/node_modules/koffi"
ver=$(node -p "require('$here/node_modules/koffi/package.json').version")
( cd "$app" && npm pack --silent "@koromix/koffi-linux-$node_arch@$ver" >/dev/null \
  && mkdir "node_modules/@koromix/koffi-linux-$node_arch" \
  && tar -xzf koromix-koffi-linux-$node_arch-$ver.tgz -C "node_modules/@koromix/koffi-linux-$node_arch" --strip-components=1 )
script="const k = require('koffi'); const l = k.load('libspeexdsp.so.1'); k.opaque('SpeexEchoState');
const init = l.func('SpeexEchoState *speex_echo_state_init(int, int)');
const run = l.func('void speex_echo_cancellation(SpeexEchoState *, const int16_t *, const int16_t *, _Out_ int16_t *)');
const st = init(160, 1600); const ref = new Int16Array(160).map((_, i) => Math.round(8000 * Math.sin(i / 3)));
const out = new Int16Array(160); run(st, ref, ref, out);
console.log('speex ran on ' + process.arch + ' (node ' + process.version + '), ' + out.length + ' samples out');"
echo "bookworm-engine($arch): $(chroot "$root" dpkg-query -W -f '${Package} ${Version} ${Architecture}, ' libc6 libspeexdsp1 nodejs)"
chroot "$root" bash -c "cd /tmp/engine-check && node -e \"\$1\"" _ "$script"
