#!/usr/bin/env bash
# Run live-speaker on this machine, whatever it has:
#  - installs what is missing (Debian packages, npm deps) and builds;
#  - no API key (GEMINI_API_KEY): the built-in Live API emulator in parrot
#    mode answers, by saying your own words back;
#  - no sound card (or --simulated): a simulated one (scripts/soundcard.sh),
#    and the demo speaks a question into its "room" with espeak-ng, presses
#    the button for you, and saves what the speaker said to a WAV file.
# With a real sound card it runs the daemon in the foreground: press the
# button, or run `node dist/src/main.js ctl press --socket ...` (printed).
#
# --tool (simulated, no key): then a tool call: a 1400 Hz tone stands for
# "set a timer" to the parrot, which calls set_timer for 5 s; the timer
# rings on the speaker and a press stops it.
#
# Usage: bash scripts/demo.sh [--simulated] [--keep] [--tool] [--say "your question"]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

tool=no simulated=auto keep=no question="Hello speaker, what is the weather like in Lisbon today?"
while [ $# -gt 0 ]; do
  case "$1" in
    --simulated) simulated=yes ;;
    --keep) keep=yes ;;
    --tool) tool=yes ;;
    --say) question=$2; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "demo: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

say() { printf '\033[1mdemo:\033[0m %s\n' "$*"; }

# ---- what is missing gets installed (the same list as scripts/test.sh and install.sh)
bash scripts/deps.sh demo
addons=(node_modules/speaker/build/Release/binding.node node_modules/sd-notify/build/Release/notify.node)
if [ ! -f "${addons[0]}" ] || [ ! -f "${addons[1]}" ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm dependencies"
  npm ci --no-audit --no-fund
  for a in "${addons[@]}"; do
    [ -f "$a" ] || { say "the native addon $a did not build (see npm's output above)"; exit 1; }
  done
fi
npm run --silent build

run=$(mktemp -d /tmp/live-speaker-demo.XXXXXX)
cleanup() {
  [ -n "${daemon_pid:-}" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null || true
  [ "$simulated" = yes ] && bash scripts/soundcard.sh stop "$run/card" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# ---- a sound card: the real one, or the simulated one
if [ "$simulated" = auto ]; then
  if arecord -l 2>/dev/null | grep -q '^card' && aplay -l 2>/dev/null | grep -q '^card'; then simulated=no; else simulated=yes; fi
fi
if [ "$simulated" = yes ]; then
  say "no sound card here: using a simulated one (PulseAudio null sinks behind ALSA 'default')"
  bash scripts/soundcard.sh start "$run/card" >/dev/null
  # shellcheck disable=SC1091
  source "$run/card/env"
fi

cat > "$run/config.yaml" <<YAML
control:
  socket: $run/control.sock
conversation:
  follow_up_s: 3
state:
  dir: $run/state
YAML
ctl() { node dist/src/main.js ctl --socket "$run/control.sock" "$@"; }

if [ -z "${GEMINI_API_KEY:-}${GOOGLE_API_KEY:-}" ]; then
  say "no GEMINI_API_KEY: the built-in emulator answers in parrot mode (it repeats what you say)"
fi
say "starting the daemon (logs: $run/daemon.log)"
node dist/src/main.js --config "$run/config.yaml" > "$run/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do grep -q '"msg":"ready' "$run/daemon.log" 2>/dev/null && break; sleep 0.1; done
grep -q '"msg":"ready' "$run/daemon.log" || { cat "$run/daemon.log"; say "the daemon did not start"; exit 1; }

if [ "$simulated" = no ]; then
  say "ready. Press the button, or in another shell: node dist/src/main.js ctl press --socket $run/control.sock"
  say "Ctrl-C stops it."
  tail -f "$run/daemon.log" &
  wait "$daemon_pid"
  exit $?
fi

# ---- one whole conversation on the simulated card
espeak-ng -w "$run/q.wav" "$question"
sox "$run/q.wav" -r 16000 -c 1 -b 16 -e signed-integer -t raw "$run/q.raw"
parec --device=spk.monitor --raw --rate=24000 --channels=1 --format=s16le > "$run/speaker.raw" &
rec_pid=$!
say "pressing the button (ctl press) and saying: \"$question\""
ctl press >/dev/null
pacat --device=room --raw --rate=16000 --channels=1 --format=s16le "$run/q.raw"
for _ in $(seq 200); do ctl status --json | grep -q '"state": "idle"' && break; sleep 0.1; done
sleep 0.3
kill "$rec_pid" 2>/dev/null; wait "$rec_pid" 2>/dev/null || true
sox -t raw -r 24000 -b 16 -e signed-integer -c 1 "$run/speaker.raw" "$run/reply.wav" silence 1 0.05 1% reverse silence 1 0.05 1% reverse 2>/dev/null || true
secs=$(soxi -D "$run/reply.wav" 2>/dev/null || echo 0)
sox "$run/q.wav" "$run/q-trimmed.wav" silence 1 0.05 1% reverse silence 1 0.05 1% reverse 2>/dev/null || true
qsecs=$(soxi -D "$run/q-trimmed.wav" 2>/dev/null || echo 0)
echo
say "what happened (from the daemon's log):"
node -e 'const l = require("fs").readFileSync(process.argv[1], "utf8").split("\n").filter((x) => x.startsWith("{")).map((x) => JSON.parse(x)).filter((x) => x.msg === "state"); console.log("  idle -> " + l.map((x) => x.to).join(" -> "))' "$run/daemon.log"
say "the speaker said ${secs} s of audio (the question was ${qsecs} s): $run/reply.wav  (play it: aplay $run/reply.wav)"
ctl status
if ! grep -q '"to":"speaking"' "$run/daemon.log" || ! awk -v s="$secs" 'BEGIN { exit !(s + 0 > 0) }'; then
  tail -n 20 "$run/daemon.log"
  say "the speaker said nothing: something is wrong (the daemon's log is above and in $run/daemon.log)"
  [ "$keep" = yes ] || exit 1
fi
# ---- a tool call (parrot mode): a steady 1400 Hz tone stands for "set a timer for 5 seconds"
if [ "$tool" = yes ] && [ -z "${GEMINI_API_KEY:-}${GOOGLE_API_KEY:-}" ]; then
  sox -n -r 16000 -c 1 -b 16 -e signed-integer -t raw "$run/tone.raw" synth 1.2 sine 1400 vol 0.3
  say "pressing again and playing a 1400 Hz tone: the parrot takes it for \"set a timer\" and calls set_timer"
  ctl press >/dev/null
  pacat --device=room --raw --rate=16000 --channels=1 --format=s16le "$run/tone.raw"
  for _ in $(seq 200); do grep -q '"msg":"timer ringing"' "$run/daemon.log" && break; sleep 0.1; done
  node -e 'for (const x of require("fs").readFileSync(process.argv[1], "utf8").split("\n").filter((x) => x.startsWith("{")).map((x) => JSON.parse(x)))
    if (/^tool |^timer |^timer ringing/.test(x.msg)) console.log("  " + x.msg + " " + JSON.stringify(x.args ?? x.label ?? x.tool ?? ""))' "$run/daemon.log"
  if grep -q '"msg":"timer ringing"' "$run/daemon.log"; then
    sleep 3
    say "the timer rings (see ctl status: timers); pressing to stop it"
    ctl press >/dev/null
  else
    say "the timer did not ring: see $run/daemon.log"; [ "$keep" = yes ] || exit 1
  fi
fi
if [ "$keep" = yes ]; then
  say "--keep: the daemon keeps running; try: node dist/src/main.js ctl press --socket $run/control.sock   (Ctrl-C stops)"
  wait "$daemon_pid"
fi
