#!/usr/bin/env bash
# A Debian 13 (trixie) root of a Raspberry Pi architecture, run on this x86
# machine through qemu-user (binfmt_misc), for test/arm.test.ts. Made with
# debootstrap once and cached OUTSIDE the repo; the test never writes into
# it (test/bench/in-root.sh mounts an overlay over it).
#
#   test/bench/arm-root.sh ARCH [CACHE_DIR]   prints the root's path on stdout
#
# ARCH is a Debian architecture: arm64 (64-bit Raspberry Pi OS) or armhf
# (32-bit Raspberry Pi OS). CACHE_DIR defaults to $LIVE_SPEAKER_TEST_CACHE or
# /var/cache/live-speaker-test; the root is CACHE_DIR/ARCH-root. It is rebuilt
# when STAMP below changes; concurrent callers wait on a lock.
#
# On top of it, every package of scripts/deps.sh's runtime and demo groups
# (the same list install.sh and demo.sh install; a package added there
# follows here) that the root lacks is installed once into a layer cached
# beside it, CACHE_DIR/ARCH-pkgs-HASH, keyed by that list: then what is
# printed is an overlay lowerdir, "LAYER:ROOT", which test/bench/in-root.sh
# mounts as it mounts a plain root. The root itself is never modified (other
# runs may have it mounted), and a list change costs one emulated apt-get
# install of the new packages, not a new debootstrap. Needs root,
# debootstrap, qemu-user-static and binfmt-support (registers the qemu
# interpreter itself), and the Debian mirror named in this machine's apt
# sources. Everything in the root runs emulated: expect 10-20 minutes cold.
set -euo pipefail

arch=${1:?usage: arm-root.sh arm64|armhf [CACHE_DIR]}
cache=${2:-${LIVE_SPEAKER_TEST_CACHE:-/var/cache/live-speaker-test}}
case "$arch" in
  arm64) qemu=aarch64 ;;
  armhf) qemu=arm ;;
  *) echo "arm-root: unknown architecture $arch (arm64 or armhf)" >&2; exit 2 ;;
esac
root=$cache/$arch-root
# What scripts/install.sh installs on a Pi (Debian's nodejs and npm, node-gyp
# building against libnode-dev's headers, the addons' -dev packages), so
# that npm ci in the test needs no apt download.
PKGS="nodejs npm node-gyp libnode-dev alsa-utils libasound2-dev libasound2-plugins libsystemd-dev python3 make g++ ca-certificates procps"
STAMP="v1 trixie $arch minbase | $PKGS"

log() { echo "arm-root($arch): $*" >&2; }

[ "$(id -u)" = 0 ] || { log "needs root"; exit 2; }
command -v debootstrap >/dev/null || { log "debootstrap not installed (apt-get install debootstrap)"; exit 2; }

# binfmt_misc: mounted, and the qemu interpreter registered and enabled.
# A package's postinst in another root (or on this machine) may have
# removed the registration since the last run: check every time.
binfmt=/proc/sys/fs/binfmt_misc
ensure_binfmt() {
  [ -f "$binfmt/status" ] || mount -t binfmt_misc binfmt_misc "$binfmt" 2>/dev/null \
    || { log "cannot mount binfmt_misc on $binfmt"; return 1; }
  if ! grep -qx enabled "$binfmt/qemu-$qemu" 2>/dev/null; then
    command -v update-binfmts >/dev/null || { log "update-binfmts not found (apt-get install binfmt-support qemu-user-static)"; return 1; }
    update-binfmts --enable "qemu-$qemu" >&2 || { log "update-binfmts --enable qemu-$qemu failed (apt-get install qemu-user-static)"; return 1; }
  fi
  grep -qx enabled "$binfmt/qemu-$qemu" || { log "qemu-$qemu is not enabled in binfmt_misc"; return 1; }
  # The F flag: the kernel opened the interpreter when it was registered, so
  # it need not exist inside the root.
  grep -q '^flags:.*F' "$binfmt/qemu-$qemu" || { log "qemu-$qemu is registered without the F flag (qemu-user-static registers it with F)"; return 1; }
}
ensure_binfmt || exit 2

mkdir -p "$cache"
exec 9>"$cache/.lock-$arch"
flock -w 3600 9 || { log "could not lock $cache/.lock-$arch"; exit 1; }

deps=$(dirname "${BASH_SOURCE[0]}")/../../scripts/deps.sh
# scripts/deps.sh's runtime and demo packages that ROOT's dpkg database does
# not have installed (read here, natively: no emulation needed to check).
missing_in() {
  local want
  want=$(bash "$deps" --list demo | sort -u) || { log "scripts/deps.sh --list demo failed"; return 1; }
  awk '/^Package:/ { p = $2 } /^Status:/ && $4 == "installed" { print p }' "$1/var/lib/dpkg/status" | sort -u \
    | comm -23 <(printf '%s\n' $want) -
}
# The layer with the missing packages (built here once, under the lock), or
# the root alone when nothing is missing; prints the lowerdir.
print_root() {
  local missing key layer new
  missing=$(missing_in "$root" | tr '\n' ' ' | sed 's/ $//')
  if [ -z "$missing" ]; then echo "$root"; return 0; fi
  key=$(printf '%s\n%s\n' "$STAMP" "$missing" | sha256sum | cut -c1-12)
  layer=$cache/$arch-pkgs-$key
  if [ -f "$layer/.stamp" ]; then echo "$layer/upper:$root"; return 0; fi
  log "installing into a layer over the root what scripts/deps.sh lists and it lacks: $missing"
  new=$layer.new
  rm -rf --one-file-system "$new"
  mkdir -p "$new/upper" "$new/work" "$new/m"
  ( while sleep 0.5; do ensure_binfmt >/dev/null 2>&1 || true; done ) &
  local guard=$! t0
  t0=$(date +%s)
  unshare --mount --propagation private bash -euo pipefail -c '
    root=$1 new=$2; shift 2
    m=$new/m
    mount -t overlay overlay -o "lowerdir=$root,upperdir=$new/upper,workdir=$new/work" "$m"
    mount -t proc proc "$m/proc"
    mount --rbind /dev "$m/dev"
    mount -t tmpfs tmpfs "$m/tmp"
    printf "#!/bin/sh\nexit 101\n" >"$m/usr/sbin/policy-rc.d"; chmod +x "$m/usr/sbin/policy-rc.d"
    cp /etc/resolv.conf "$m/etc/resolv.conf" 2>/dev/null || true
    export DEBIAN_FRONTEND=noninteractive LC_ALL=C
    chroot "$m" apt-get update -q
    chroot "$m" apt-get install -y -q --no-install-recommends "$@" || chroot "$m" apt-get -f install -y -q
    chroot "$m" apt-get -f install -y -q
    chroot "$m" apt-get clean
    rm -f "$m/usr/sbin/policy-rc.d"
  ' _ "$root" "$new" $missing >"$cache/pkgs-$arch.log" 2>&1 \
    || { kill $guard 2>/dev/null; log "apt-get in the layer failed, see $cache/pkgs-$arch.log:"; tail -n 30 "$cache/pkgs-$arch.log" >&2; return 1; }
  kill $guard 2>/dev/null || true
  rm -rf "$new/work" "$new/m"
  local still
  still=$(missing_in "$new/upper" | tr '\n' ' ' | sed 's/ $//')
  [ -z "$still" ] || { log "still missing after apt-get: $still (see $cache/pkgs-$arch.log)"; return 1; }
  printf '%s\n%s\n' "$STAMP" "$missing" >"$new/.stamp"
  mv "$new" "$layer"
  log "layer built in $(( $(date +%s) - t0 )) s: $layer"
  echo "$layer/upper:$root"
}

if [ -f "$root/.stamp" ] && [ "$(cat "$root/.stamp")" = "$STAMP" ]; then
  print_root
  exit $?
fi

# The Debian mirror this machine already uses (deb822 .sources or one-line lists).
mirror=$(
  { grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}'
    grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print $2}'
  } | grep -E '/debian/?$' | head -n1 || true
)
mirror=${mirror:-http://deb.debian.org/debian}
log "building $root from $mirror (cold cache: 10-20 minutes under emulation)"

new=$root.new
# A failed debootstrap leaves its proc/sys mounts inside: unmount, then remove.
remove_root() {
  local m
  for m in $(awk -v r="$1" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/self/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf --one-file-system "$1"
}
remove_root "$new"
# Another root being built on this machine (e.g. test/bench/trixie-root.sh:
# systemd's trigger runs systemd-binfmt when python3 lands, which drops every
# registration) can unregister qemu mid-build: a guard re-registers it.
( while sleep 0.5; do ensure_binfmt >/dev/null 2>&1 || true; done ) &
guard=$!
trap 'kill $guard 2>/dev/null || true' EXIT
t0=$(date +%s)
eatmydata=()
command -v eatmydata >/dev/null && eatmydata=(eatmydata)
"${eatmydata[@]}" debootstrap --arch="$arch" --variant=minbase trixie "$new" "$mirror" >"$cache/debootstrap-$arch.log" 2>&1 \
  || { log "debootstrap failed, see $cache/debootstrap-$arch.log:"; tail -n 20 "$cache/debootstrap-$arch.log" >&2; exit 1; }
t1=$(date +%s)
log "debootstrap took $((t1 - t0)) s"

cat >"$new/usr/sbin/policy-rc.d" <<'EOF'
#!/bin/sh
exit 101
EOF
chmod +x "$new/usr/sbin/policy-rc.d"
# Nothing installed in the root may touch binfmt_misc, which is this machine's
# (a postinst running update-binfmts or systemd-binfmt has been seen to drop
# the qemu registrations, after which every binary in the root fails with
# "Exec format error"): divert both to true before apt runs.
for tool in /usr/sbin/update-binfmts /usr/lib/systemd/systemd-binfmt; do
  chroot "$new" dpkg-divert --local --rename --divert "$tool.distrib" --add "$tool" >/dev/null
  ln -sf /bin/true "$new$tool"
done
cp /etc/resolv.conf "$new/etc/resolv.conf" 2>/dev/null || true
# A throwaway test root: no fsync per file, no translations, no docs.
echo force-unsafe-io >"$new/etc/dpkg/dpkg.cfg.d/unsafe-io"
echo 'Acquire::Languages "none";' >"$new/etc/apt/apt.conf.d/99no-translations"
printf 'path-exclude=/usr/share/doc/*\npath-exclude=/usr/share/man/*\npath-exclude=/usr/share/locale/*\n' \
  >"$new/etc/dpkg/dpkg.cfg.d/no-docs"
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
' _ "$new" $PKGS >>"$cache/debootstrap-$arch.log" 2>&1 \
  || { log "apt-get in the new root failed, see $cache/debootstrap-$arch.log:"; tail -n 30 "$cache/debootstrap-$arch.log" >&2; exit 1; }
rm -f "$new/usr/sbin/policy-rc.d"
ensure_binfmt || { log "the qemu registration was lost while building"; exit 1; }
got=$(chroot "$new" node -p 'process.arch + " " + process.version' 2>&1) || { log "node does not run in the root: $got"; exit 1; }
log "apt-get took $(( $(date +%s) - t1 )) s; node in the root: $got"
echo "$STAMP" >"$new/.stamp"
remove_root "$root"
mv "$new" "$root"
log "built in $(( $(date +%s) - t0 )) s"
print_root
