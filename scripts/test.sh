#!/usr/bin/env bash
# The whole test suite on a fresh machine (the README's test command, and CI's):
# Debian packages (scripts/deps.sh, only when missing), npm ci, npm test.
# Runs unattended (CI=true, no stdin) as root in a fresh clone; uses sudo
# for apt when not root.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CI="${CI:-true}"
export DEBIAN_FRONTEND=noninteractive

# The Debian packages (only when missing; Node.js from Debian when there is
# none): the same list as the demo's and install.sh's, plus what the tests
# alone need. The list and the reason for each package: scripts/deps.sh.
bash scripts/deps.sh test

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
