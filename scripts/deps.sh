#!/usr/bin/env bash
# The Debian packages live-speaker needs, in one place, installed when missing.
# Called by scripts/install.sh (runtime), scripts/demo.sh (demo) and
# scripts/test.sh (test); each group includes the one before it. The
# programs the tests that cannot run in test/fresh-debian.test.ts's root
# call are listed with their packages in test/bench/needs.ts: each of those
# packages is here or on every Debian (test/needs.test.ts), and is installed
# in a fresh root after `deps.sh test` (test/fresh-debian.test.ts).
#
#   scripts/deps.sh runtime|demo|test          install what is missing
#   scripts/deps.sh --list runtime|demo|test   print the group's packages, one a
#                                              line, as on a machine without
#                                              Node.js (installs nothing)
#
# Node.js >= 20 is needed: when there is none, Debian's nodejs and npm are
# installed (trixie: 20.19); on bookworm (nodejs 18) it stops and says so.
# Uses sudo when not root (sudo -n without a terminal); noninteractive; when
# everything is there it runs no apt at all.
set -euo pipefail

say() { printf '\033[1mdeps:\033[0m %s\n' "$*"; }
die() { printf 'deps.sh: %s\n' "$*" >&2; exit 1; }

list=no
[ "${1:-}" = --list ] && { list=yes; shift; }
group=${1:-}

# ---- the groups (one reason per package)
runtime=(
  alsa-utils          # arecord: the microphone; aplay: `live-speaker doctor`
  libasound2-dev      # ALSA headers: npm ci builds the `speaker` addon (playback)
  libasound2-plugins  # ALSA's pulse plugin: sound through PulseAudio/PipeWire where one runs
  libsystemd-dev      # libsystemd headers: npm ci builds the `sd-notify` addon (src/systemd.ts)
  python3             # node-gyp, which builds the native addons (speaker, sd-notify, epoll)
  make                # node-gyp
  g++                 # node-gyp
  ca-certificates     # npm reaches the registry over TLS
  procps              # /bin/kill: the unit's ExecReload on systemd < 253 (bookworm)
  libspeexdsp1        # SpeexDSP: the echo canceller's engine (src/audio/aec/, loaded through koffi: no -dev package needed)
  gpiod               # libgpiod's tools (gpioset, gpiomon, gpioinfo): the character-device GPIO backend (gpio.backend)
)
demo=(
  sox                 # the demo's question to the card's format; trims and measures the reply (soxi)
  espeak-ng           # speaks the demo's question (and the tests' speech)
  pulseaudio          # the simulated sound card (scripts/soundcard.sh)
  pulseaudio-utils    # pactl, pacat, parec: play into and record from the simulated card
)
test=(
  debootstrap         # the Debian roots test/systemd.test.ts and test/fresh-debian.test.ts run in
  mmdebstrap          # the bookworm arm64/armhf roots test/bookworm.test.ts checks the echo engine in
  arch-test           # mmdebstrap, for a foreign architecture ("E: install arch-test for foreign architecture support"; only Recommended)
  faketime            # libfaketime: the test that steps the wall clock mid-reply (test/promises-daemon.test.ts)
  qemu-user-static    # runs arm64 and armhf programs: test/arm.test.ts builds and plays audio in Pi-like roots
  binfmt-support      # registers qemu for those architectures (update-binfmts)
  patch               # vendor/speaker/pack.sh --check: the vendored speaker is the registry's plus its patch
  mosquitto           # the MQTT broker the MQTT tests start on a loopback port (test/mqtt*.test.ts), as users run it
  kmod                # modprobe overlay: test/fresh-debian.test.ts, when the kernel has not loaded it
)
# Node.js from Debian, when there is none: npm, and node-gyp with Node's
# headers (libnode-dev), so the addons build offline against this very node.
node_pkgs=(nodejs npm libnode-dev node-gyp)

case "$group" in
  runtime) pkgs=("${runtime[@]}") ;;
  demo) pkgs=("${runtime[@]}" "${demo[@]}") ;;
  test) pkgs=("${runtime[@]}" "${demo[@]}" "${test[@]}") ;;
  *) echo "usage: $0 [--list] runtime|demo|test" >&2; exit 2 ;;
esac

if [ "$list" = yes ]; then
  printf '%s\n' "${pkgs[@]}" "${node_pkgs[@]}"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
codename=unknown
[ -r /etc/os-release ] && codename=$(. /etc/os-release; echo "${VERSION_CODENAME:-unknown}")

# ---- Node.js
if command -v node >/dev/null 2>&1; then
  [ "$(node_major)" -ge 20 ] || die "Node.js >= 20 is needed, found $(node --version) at $(command -v node)"
  if [ "$(command -v node)" = /usr/bin/node ] && installed nodejs \
     && dpkg-query -W -f='${Maintainer}' nodejs 2>/dev/null | grep -qi debian; then
    # Debian's own nodejs (not NodeSource's, which brings its own npm): its
    # npm, node-gyp and headers come from Debian too.
    pkgs+=("${node_pkgs[@]:1}")
  elif ! command -v npm >/dev/null 2>&1; then
    die "node $(node --version) at $(command -v node) has no npm beside it: install npm for that Node.js"
  fi
else
  [ "$codename" != bookworm ] \
    || die "Node.js >= 20 is needed and bookworm's nodejs is 18: install Node.js 20 or newer (e.g. from NodeSource) first, then re-run"
  pkgs+=("${node_pkgs[@]}")
fi

# ---- what is missing
missing=()
for p in "${pkgs[@]}"; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "not root and no sudo: as root, run: apt-get install ${missing[*]}"
    if [ -t 0 ]; then sudo=(sudo); else sudo=(sudo -n); fi
  fi
  "${sudo[@]}" apt-get update -q </dev/null
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
  # npm has been seen half-configured straight after install: -f install mends it.
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -f install -y -q </dev/null
fi

command -v node >/dev/null 2>&1 && [ "$(node_major)" -ge 20 ] \
  || die "Node.js >= 20 not found after installing packages (found: $(node --version 2>/dev/null || echo none))"
command -v npm >/dev/null 2>&1 || die "npm not found after installing packages"
