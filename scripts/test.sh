#!/usr/bin/env bash
# The whole test suite on a fresh machine (the README's test command, and CI's):
# system packages (only when missing), npm ci, npm test.
# Runs unattended (CI=true, no stdin) as root in a fresh clone; uses sudo
# for apt when not root.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CI="${CI:-true}"
export DEBIAN_FRONTEND=noninteractive

# alsa-utils: arecord/aplay; libasound2-dev, python3, make, g++: build the
# `speaker` addon; sox, libsox-fmt-all, espeak-ng: test speech; pulseaudio,
# pulseaudio-utils, libasound2-plugins: the simulated sound card
# (scripts/soundcard.sh). libsystemd-dev: build the `sd-notify` addon
# (src/systemd.ts). debootstrap: the Debian root that test/systemd.test.ts
# boots systemd in (cached in /var/cache/live-speaker-test). qemu-user-static,
# binfmt-support: the arm64 and armhf Debian roots test/arm.test.ts builds and
# plays audio in (test/bench/arm-root.sh, cached there too).
pkgs=(alsa-utils libasound2-dev sox libsox-fmt-all espeak-ng pulseaudio pulseaudio-utils
      libasound2-plugins python3 make g++ libsystemd-dev debootstrap qemu-user-static binfmt-support)

installed() { dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed'; }

missing=()
for p in "${pkgs[@]}"; do
  installed "$p" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "ci: installing missing Debian packages: ${missing[*]}"
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "ci: not root and no sudo; install: ${missing[*]}" >&2; exit 1; }
    sudo=(sudo -n)
  fi
  "${sudo[@]}" apt-get update </dev/null
  "${sudo[@]}" apt-get install -y --no-install-recommends "${pkgs[@]}" </dev/null
else
  echo "ci: Debian packages present"
fi

command -v node >/dev/null 2>&1 || { echo "ci: node not found (Node.js >= 20 required)" >&2; exit 1; }
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "ci: Node.js >= 20 required, found $(node --version)" >&2
  exit 1
fi
echo "ci: node $(node --version), npm $(npm --version)"

npm ci --no-audit --no-fund </dev/null

# The native addon must have been built by npm ci (libasound2-dev present).
# Do not `require('speaker')` to check: loading it opens ALSA `default` and
# aborts the process (SIGABRT) when there is no sound card.
[ -f node_modules/speaker/build/Release/binding.node ] \
  || { echo "ci: the speaker addon did not build (needs libasound2-dev, python3, make, g++)" >&2; exit 1; }
[ -f node_modules/sd-notify/build/Release/notify.node ] \
  || { echo "ci: the sd-notify addon did not build (needs libsystemd-dev, python3, make, g++)" >&2; exit 1; }

npm test </dev/null
