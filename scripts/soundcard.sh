#!/usr/bin/env bash
# A simulated sound card for machines without one: a private PulseAudio
# instance with two null sinks, reached through real ALSA (`default` device).
#
#   scripts/soundcard.sh start  DIR   start (idempotent), write DIR/env
#   scripts/soundcard.sh stop   DIR   stop it, remove socket and pid file
#   scripts/soundcard.sh status DIR   exit 0 when it answers, 1 otherwise
#
# The card:
#   spk   null sink, 24000 Hz mono s16le, default sink: what ALSA `default`
#         plays (aplay, the `speaker` addon) lands here; record it from
#         `spk.monitor`.
#   room  null sink, 16000 Hz mono s16le; its monitor `room.monitor` is the
#         default source: what ALSA `default` captures (arecord). Play
#         "speech in the room" into the sink `room` (pacat --device=room).
# Both sinks are paced by PulseAudio's clock, so everything runs in real time.
#
# A process uses the card once it has sourced DIR/env:
#   PULSE_SERVER=unix:DIR/native   pactl/pacat/parec, and the ALSA pulse
#                                  plugin, talk to this instance and no other
#                                  (otherwise a desktop's own PulseAudio or
#                                  PipeWire could be picked up).
#   ALSA_CONFIG_PATH=DIR/alsa.conf alsa-lib reads the system alsa.conf and
#                                  then, as a last hook, DIR/asoundrc, whose
#                                  pcm/ctl `default` are this instance. HOME
#                                  is left alone.
set -euo pipefail

die() { echo "soundcard: $*" >&2; exit 1; }

usage() { echo "usage: $0 start|stop|status DIR" >&2; exit 2; }

[ $# -eq 2 ] || usage
cmd=$1
dir=$2
case "$cmd" in
  start) mkdir -p "$dir" ;;
  stop | status)
    if [ ! -d "$dir" ]; then
      echo "soundcard: not running in $dir (no such directory)"
      [ "$cmd" = stop ] && exit 0 || exit 1
    fi
    ;;
  *) usage ;;
esac
dir=$(cd "$dir" && pwd -P)

sock="$dir/native"
pidfile="$dir/pid"
# The unix socket path must fit in sun_path (108 bytes including the NUL).
[ ${#sock} -le 100 ] || die "directory path too long for a unix socket: $sock"

for tool in pulseaudio pactl; do
  command -v "$tool" >/dev/null 2>&1 \
    || die "$tool not found (Debian: apt-get install pulseaudio pulseaudio-utils alsa-utils libasound2-plugins)"
done

alsa_conf_sys=${ALSA_CONFIG_DIR:-/usr/share/alsa}/alsa.conf

# Run a pulse client against this instance only.
client() { PULSE_SERVER="unix:$sock" "$@"; }

answers() {
  [ -S "$sock" ] && client timeout 5 pactl info >/dev/null 2>&1
}

# A live pulseaudio process (not a zombie: the daemon is reparented to PID 1,
# which in containers may be slow to reap it).
is_daemon() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  case "$stat" in
    *"(pulseaudio) "[!Z]*) return 0 ;;
    *) return 1 ;;
  esac
}

# The pid of this card's daemon: from its pid file when that names a
# pulseaudio process, else the pulseaudio whose command line runs
# DIR/default.pa (pid file lost or overwritten). Nothing else is matched.
daemon_pid() {
  local pid="" f
  if [ -f "$pidfile" ]; then
    pid=$(tr -dc '0-9' <"$pidfile")
    if [ -n "$pid" ] && is_daemon "$pid"; then
      echo "$pid"
      return 0
    fi
  fi
  # One grep over every command line (NUL-separated arguments): an argument
  # exactly equal to DIR/default.pa.
  for f in $(grep -lzxF -- "$dir/default.pa" /proc/[0-9]*/cmdline 2>/dev/null); do
    pid=${f#/proc/}
    pid=${pid%/cmdline}
    if is_daemon "$pid"; then
      echo "$pid"
      return 0
    fi
  done
  return 1
}

write_files() {
  # The daemon's startup script: nothing but what we list (-n).
  cat >"$dir/default.pa" <<EOF
load-module module-null-sink sink_name=spk rate=24000 channels=1 format=s16le sink_properties=device.description=soundcard-speaker
load-module module-null-sink sink_name=room rate=16000 channels=1 format=s16le sink_properties=device.description=soundcard-room
# Keep-alive: an idle null sink asks for 2 s of latency and renders that far
# ahead; a stream that connects then waits up to ~2-4 s before it moves (seen
# here: 100 ms through pacat took 3.9 s, arecord's first data came after
# 1.7 s). A permanent low-latency loopback of silence into each sink keeps
# them at ~20 ms blocks (~1% CPU). Adding zeros leaves the audio bit-exact.
load-module module-null-source source_name=keepalive rate=16000 channels=1 format=s16le
load-module module-loopback source=keepalive sink=room latency_msec=60 source_dont_move=true sink_dont_move=true
load-module module-loopback source=keepalive sink=spk latency_msec=60 source_dont_move=true sink_dont_move=true
# The sinks had already rendered 2 s ahead before the loopbacks came:
# restart their clocks (otherwise the first stream still waits ~2 s).
suspend-sink room 1
suspend-sink room 0
suspend-sink spk 1
suspend-sink spk 0
load-module module-native-protocol-unix socket=$sock auth-anonymous=1
set-default-sink spk
set-default-source room.monitor
EOF
  cat >"$dir/asoundrc" <<EOF
# ALSA default device = the simulated sound card in $dir
pcm.!default {
  type pulse
  server "unix:$sock"
  hint { show on; description "live-speaker simulated sound card ($dir)" }
}
ctl.!default {
  type pulse
  server "unix:$sock"
}
EOF
  # The system configuration first, then ours as the last hook. Top-level
  # definitions would lose: the system alsa.conf's hook 0 loads
  # /etc/alsa/conf.d after every top-level file, and files there (Debian's
  # 99-pulse.conf, Pi OS's 99-pipewire-default.conf) redefine pcm.!default.
  # alsa-lib runs hooks by consecutive integer index, so ours is 1.
  cat >"$dir/alsa.conf" <<EOF
<$alsa_conf_sys>
@hooks.1 {
  func load
  files [ "$dir/asoundrc" ]
  errors false
}
EOF
  cat >"$dir/env" <<EOF
export PULSE_SERVER='unix:$sock'
export ALSA_CONFIG_PATH='$dir/alsa.conf'
EOF
}

start() {
  write_files
  if answers; then
    echo "soundcard: already running in $dir (pid $(daemon_pid || echo '?'))"
    return 0
  fi
  local pid i
  if pid=$(daemon_pid); then
    # Running but not answering: replace it.
    kill -KILL "$pid" 2>/dev/null || true
    for i in $(seq 1 40); do
      is_daemon "$pid" || break
      sleep 0.05
    done
  fi
  rm -f "$sock" "$pidfile"
  [ -f "$alsa_conf_sys" ] || die "$alsa_conf_sys not found (alsa-lib's configuration; Debian: libasound2-data)"

  # As root, pulseaudio warns "not intended to be run as root" and carries on
  # (per-user mode in a private runtime dir). HOME/XDG_CONFIG_HOME point into
  # DIR so the daemon writes no cookie or state into the real home.
  # --disable-shm: audio goes over the socket; /dev/shm in containers is small.
  # --high-priority (nice -11): a sound card never stalls because the CPU is
  # busy, and a desktop's sound server runs raised (rtkit) too. At the default
  # nice, with both CPUs of this machine busy, the server held the daemon's
  # writes back 250-290 ms and the wake-chime test failed 9 runs in 70; raised,
  # 0 in 30 under the same load. What is left is what a real card has: only the
  # daemon can be late.
  env -u PULSE_SERVER -u DBUS_SESSION_BUS_ADDRESS -u DISPLAY \
      HOME="$dir" XDG_CONFIG_HOME="$dir/config" XDG_RUNTIME_DIR="$dir" \
      PULSE_RUNTIME_PATH="$dir" PULSE_STATE_PATH="$dir/state" \
    pulseaudio -n -F "$dir/default.pa" --daemonize=yes --exit-idle-time=-1 \
      --realtime=no --high-priority=yes --disable-shm=yes --use-pid-file=yes \
      --log-target="file:$dir/pulse.log" \
    || die "pulseaudio failed to start, see $dir/pulse.log: $(tail -n 3 "$dir/pulse.log" 2>/dev/null | tr '\n' ' ')"

  for i in $(seq 1 100); do
    if answers; then
      echo "soundcard: started in $dir (pid $(daemon_pid || echo '?')); source $dir/env to use it"
      return 0
    fi
    sleep 0.05
  done
  die "pulseaudio started but does not answer on $sock, see $dir/pulse.log"
}

stop() {
  local pid i
  if pid=$(daemon_pid); then
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do
      is_daemon "$pid" || break
      sleep 0.05
    done
    if is_daemon "$pid"; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$sock" "$pidfile"
    echo "soundcard: stopped (pid $pid) in $dir"
  else
    rm -f "$sock" "$pidfile"
    echo "soundcard: not running in $dir"
  fi
}

status() {
  if answers; then
    echo "soundcard: running in $dir (pid $(daemon_pid || echo '?')), server unix:$sock"
    return 0
  fi
  echo "soundcard: not running in $dir"
  return 1
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) usage ;;
esac
