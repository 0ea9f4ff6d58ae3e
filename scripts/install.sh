#!/usr/bin/env bash
# Install, upgrade or remove live-speaker as a systemd service on Raspberry Pi
# OS / Debian 13 (trixie), 64-bit (arm64) or 32-bit (armhf) alike. Debian 12
# (bookworm) needs Node.js >= 20 installed first (its own nodejs is 18); this
# script then uses the node on PATH (bookworm is not tested, see docs/install.md).
#
#   sudo scripts/install.sh                 install, or upgrade in place
#   sudo scripts/install.sh --no-start      install and enable, do not (re)start
#   sudo scripts/install.sh --source DIR    install from DIR (default: this checkout)
#   sudo scripts/install.sh --uninstall     remove everything but /etc/live-speaker
#
# Keys: run with GEMINI_API_KEY (and PICOVOICE_ACCESS_KEY for the wake word)
# set, e.g. `sudo GEMINI_API_KEY=... scripts/install.sh`, to store them in
# /etc/live-speaker/gemini-api-key and picovoice-access-key (root only,
# 0600, never printed), or write those files later and `systemctl restart
# live-speaker`. Without a Gemini key the daemon runs its built-in emulator,
# which says your own words back.
#
# What goes where:
#   /opt/live-speaker                       the app, built here (npm ci + tsc)
#   /etc/live-speaker/config.yaml           your config (installed once, kept on upgrade;
#                                           the new default lands beside it as config.yaml.dist)
#   /etc/live-speaker/gemini-api-key        the keys, handed to the service by LoadCredential=
#   /etc/live-speaker/picovoice-access-key
#   /etc/systemd/system/live-speaker.service
#   /usr/local/bin/live-speaker             the command (`live-speaker ctl status`, `live-speaker doctor`)
#   user and group live-speaker, in groups audio, gpio and spi
#   group live-speaker-ctl: the service's primary group, so its control
#                                           socket is that group's; add yourself to use
#                                           `live-speaker ctl` (usermod -aG live-speaker-ctl $USER)
#   a marked block in the firmware's config.txt: the button's pull
#                                           (gpio=17=ip,pu) and dtparam=spi=on for an
#                                           LED ring; a reboot applies it
set -euo pipefail

APP=/opt/live-speaker
ETC=/etc/live-speaker
UNIT=/etc/systemd/system/live-speaker.service
BIN=/usr/local/bin/live-speaker
SVC_USER=live-speaker
# Who may use `live-speaker ctl` (the unit's Group=); not the live-speaker
# group, which may read the config and group-readable key files.
CTL_GROUP=live-speaker-ctl
STATE=/var/lib/live-speaker

say() { printf '==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

usage() { sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

source_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
start=1
action=install
while [ $# -gt 0 ]; do
  case "$1" in
    --no-start) start=0 ;;
    --source) [ $# -ge 2 ] || usage 2; source_dir=$(cd "$2" && pwd -P); shift ;;
    --source=*) source_dir=$(cd "${1#--source=}" && pwd -P) ;;
    --uninstall) action=uninstall ;;
    -h|--help) usage 0 ;;
    *) warn "unknown option $1"; usage 2 ;;
  esac
  shift
done

[ "$(id -u)" = 0 ] || die "run as root (sudo $0 $*)"
export DEBIAN_FRONTEND=noninteractive
# systemd is running here (not a chroot or an image build)?
systemd_up() { [ -d /run/systemd/system ] && command -v systemctl >/dev/null; }

# The firmware's config.txt block (button pull, SPI): scripts/boot-config.sh.
# shellcheck source=boot-config.sh
. "$(dirname "${BASH_SOURCE[0]}")/boot-config.sh"

# ---------------------------------------------------------------- uninstall
if [ "$action" = uninstall ]; then
  say "removing live-speaker (keeping $ETC)"
  if bootcfg=$(bootcfg_find) && [ "$(bootcfg_remove "$bootcfg")" = changed ]; then
    note "removed live-speaker's block from $bootcfg (the pin pulls it set last until a reboot)"
  fi
  if systemd_up; then
    systemctl disable --now live-speaker.service 2>/dev/null || true
    systemctl reset-failed live-speaker.service 2>/dev/null || true
  fi
  rm -f "$UNIT"
  rm -rf "$UNIT.d"
  systemd_up && systemctl daemon-reload || true
  rm -rf "$APP" "$APP.new" "$APP.old" "$STATE"
  rm -f "$BIN"
  if id "$SVC_USER" >/dev/null 2>&1; then userdel "$SVC_USER" 2>/dev/null || warn "could not remove user $SVC_USER"; fi
  if getent group "$SVC_USER" >/dev/null; then groupdel "$SVC_USER" 2>/dev/null || true; fi
  if getent group "$CTL_GROUP" >/dev/null; then groupdel "$CTL_GROUP" 2>/dev/null || true; fi
  say "removed; $ETC (config and key) is left in place: rm -r $ETC to drop it too"
  exit 0
fi

# ---------------------------------------------------------------- install
[ -f "$source_dir/package.json" ] && [ -f "$source_dir/package-lock.json" ] && [ -d "$source_dir/src" ] \
  || die "$source_dir does not look like a live-speaker checkout (package.json, package-lock.json, src/)"
[ -f "$source_dir/systemd/live-speaker.service" ] || die "$source_dir/systemd/live-speaker.service is missing"

codename=unknown
[ -r /etc/os-release ] && codename=$(. /etc/os-release; echo "${VERSION_CODENAME:-unknown}")
say "installing live-speaker from $source_dir (OS: $codename)"
case "$codename" in
  trixie|bookworm) ;;
  *) warn "tested on Debian / Raspberry Pi OS trixie and bookworm; carrying on with $codename" ;;
esac

# --- Debian packages (only the missing ones; nothing is downloaded when all
# are there): the runtime group of scripts/deps.sh, which lists each one and
# why (the demo and the tests install the same ones, plus their own). Node.js
# >= 20 from Debian when there is none (bookworm: install it first).
node_ok() { command -v node >/dev/null && [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ]; }
node_ok && command -v npm >/dev/null && note "using Node.js $(node --version) at $(command -v node)"
bash "$(dirname "${BASH_SOURCE[0]}")/deps.sh" runtime || die "could not install the Debian packages (see above)"
node_ok || die "Node.js >= 20 not found after installing packages (found: $(node --version 2>/dev/null || echo none))"
NODE=$(command -v node)

# --- the service user
say "service user $SVC_USER (groups audio, gpio, spi)"
getent group gpio >/dev/null || { groupadd --system gpio; note "created group gpio (Raspberry Pi OS has it; udev gives it the GPIO devices)"; }
# spi: Raspberry Pi OS's udev gives it /dev/spidev* (LED rings); the unit names it, so it must exist.
getent group spi >/dev/null || { groupadd --system spi; note "created group spi (Raspberry Pi OS has it; udev gives it the SPI devices)"; }
getent group audio >/dev/null || groupadd --system audio
if id "$SVC_USER" >/dev/null 2>&1; then
  usermod -a -G audio,gpio,spi "$SVC_USER"
else
  useradd --system --user-group --groups audio,gpio,spi --home-dir "$STATE" --no-create-home \
    --shell /usr/sbin/nologin --comment "live-speaker daemon" "$SVC_USER"
  note "created user $SVC_USER"
fi
if ! getent group "$CTL_GROUP" >/dev/null; then
  groupadd --system "$CTL_GROUP"
  note "created group $CTL_GROUP: its members may use 'live-speaker ctl' (usermod -aG $CTL_GROUP \$USER, then log in again)"
fi
# Before the ctl group existed, people joined the service's own group to use
# ctl; that group reads the config and group-readable key files. Say so (no
# change is made to anyone's groups).
members=$(getent group "$SVC_USER" | cut -d: -f4 | tr ',' '\n' | grep -vx "$SVC_USER" | paste -sd' ' || true)
if [ -n "$members" ]; then
  warn "in group $SVC_USER, which can read the config and group-readable keys: $members. For 'live-speaker ctl' use group $CTL_GROUP instead: usermod -aG $CTL_GROUP USER; gpasswd -d USER $SVC_USER"
fi

# --- the app: built in $APP.new, swapped in when it is complete (the running
# service keeps running meanwhile; a failed build leaves the old one alone)
say "building the app in $APP"
rm -rf "$APP.new" "$APP.old"
mkdir -p "$APP.new"
# Only what is needed to build and run: no node_modules, dist, .git or tests' output.
# vendor/ holds local packages that package.json names (the speaker addon, patched to build on arm64).
(cd "$source_dir" && tar -cf - --exclude=./node_modules --exclude=./dist --exclude=./.git --exclude=./.bench \
   package.json package-lock.json tsconfig.json src $(for f in vendor config.yaml README.md docs LICENSE systemd scripts; do [ -e "$f" ] && echo "$f"; done)) \
  | tar -C "$APP.new" -xf -
stamp_of() { printf '%s %s %s\n' "$(sha256sum "$1/package-lock.json" | cut -d' ' -f1)" "$("$NODE" --version)" "$(uname -m)"; }
want_stamp=$(stamp_of "$APP.new")
if [ -d "$APP/node_modules" ] && [ -f "$APP/.deps-stamp" ] && [ "$(cat "$APP/.deps-stamp")" = "$want_stamp" ]; then
  note "dependencies unchanged (same package-lock.json and Node.js): reusing them"
  cp -a "$APP/node_modules" "$APP.new/node_modules"
else
  note "npm ci (builds the speaker, epoll and sd-notify addons; a few minutes on a Pi)"
  (cd "$APP.new" && env -u NODE_ENV npm ci --include=dev --no-audit --no-fund --loglevel=error </dev/null) \
    || die "npm ci failed in $APP.new (the installed version, if any, is untouched)"
fi
for addon in speaker/build/Release/binding.node sd-notify/build/Release/notify.node; do
  [ -f "$APP.new/node_modules/$addon" ] \
    || die "native addon $addon did not build (needs libasound2-dev, libsystemd-dev, python3, make, g++)"
done
(cd "$APP.new" && npm run --silent build </dev/null) || die "build failed in $APP.new"
echo "$want_stamp" >"$APP.new/.deps-stamp"
# Dev dependencies are kept (TypeScript, ~25 MB): upgrades with an unchanged
# lock file then reuse node_modules instead of rebuilding the addons.
chown -R root:root "$APP.new"
chmod -R go-w "$APP.new"
if [ -d "$APP" ]; then mv "$APP" "$APP.old"; fi
mv "$APP.new" "$APP"
rm -rf "$APP.old"
note "installed $(cd "$APP" && "$NODE" -p 'require("./package.json").version') in $APP"

# --- config and key
say "configuration in $ETC"
install -d -m 0750 -o root -g "$SVC_USER" "$ETC"
if [ -f "$APP/config.yaml" ]; then
  if [ -f "$ETC/config.yaml" ]; then
    install -m 0640 -o root -g "$SVC_USER" "$APP/config.yaml" "$ETC/config.yaml.dist"
    note "kept your $ETC/config.yaml (the new defaults are in config.yaml.dist)"
  else
    install -m 0640 -o root -g "$SVC_USER" "$APP/config.yaml" "$ETC/config.yaml"
    note "installed the default $ETC/config.yaml"
  fi
elif [ ! -f "$ETC/config.yaml" ]; then
  printf '# live-speaker configuration: every key is optional (see %s).\n{}\n' "$APP/src/config.ts" >"$ETC/config.yaml"
  chown root:"$SVC_USER" "$ETC/config.yaml"; chmod 0640 "$ETC/config.yaml"
  note "installed an empty $ETC/config.yaml (built-in defaults)"
fi
# install_key FILE VALUE WHAT: root-only (0600) file; VALUE (never echoed) replaces
# the content when given; an absent file is created empty (systemd's
# LoadCredential= needs the file to exist).
install_key() {
  local file=$1 value=$2 what=$3
  if [ -n "$value" ]; then
    (umask 077; printf '%s\n' "$value" >"$file.tmp")
    mv "$file.tmp" "$file"
    note "stored the $what in $file"
  elif [ ! -f "$file" ]; then
    (umask 077; : >"$file")
    note "created an empty $file: put your $what in it, then: systemctl restart live-speaker"
  elif [ -s "$file" ]; then
    note "kept the $what in $file"
  else
    note "$file is empty (no $what yet)"
  fi
  chown root:root "$file"
  chmod 0600 "$file"
}
install_key "$ETC/gemini-api-key" "${GEMINI_API_KEY:-}" "Gemini API key (without it: the built-in emulator)"
install_key "$ETC/picovoice-access-key" "${PICOVOICE_ACCESS_KEY:-}" "Picovoice AccessKey (only for wake.engine: porcupine)"

# --- the firmware's config.txt: the button's pull and SPI for an LED ring
say "firmware settings for the configured hardware"
if ! boot_lines=$("$NODE" "$APP/dist/src/main.js" --config "$ETC/config.yaml" boot-config </dev/null); then
  warn "cannot read $ETC/config.yaml (see above): the firmware's config.txt is left as it is"
elif ! bootcfg=$(bootcfg_find); then
  note "no /boot/firmware/config.txt or /boot/config.txt (not Raspberry Pi OS): set the button's pull in hardware, or use gpio.backend: chardev"
else
  # shellcheck disable=SC2086 # one line per word: the lines hold no spaces
  case "$(bootcfg_set "$bootcfg" $boot_lines)" in
    changed) note "updated live-speaker's block in $bootcfg (${boot_lines//$'\n'/, }): reboot for it to take effect" ;;
    *) note "$bootcfg already holds live-speaker's block${boot_lines:+ (${boot_lines//$'\n'/, })}" ;;
  esac
fi

# --- the command
say "command $BIN"
cat >"$BIN.tmp" <<EOF
#!/bin/sh
# live-speaker's command, installed by scripts/install.sh.
exec $NODE $APP/dist/src/main.js --config $ETC/config.yaml "\$@"
EOF
chmod 0755 "$BIN.tmp"
mv "$BIN.tmp" "$BIN"

# --- the unit
say "systemd unit $UNIT"
sdver=$(systemctl --version 2>/dev/null | sed -n '1s/^systemd \([0-9]*\).*/\1/p')
sdver=${sdver:-0}
sed "s#^ExecStart=/usr/bin/node #ExecStart=$NODE #" "$source_dir/systemd/live-speaker.service" >"$UNIT.tmp"
if [ "$sdver" -lt 254 ]; then
  # systemd 252 (bookworm): no Type=notify-reload (253), no RestartSteps (254).
  sed -i -e 's/^Type=notify-reload$/Type=notify/' \
         -e 's#^ReloadSignal=SIGHUP$#ExecReload=/bin/kill -HUP $MAINPID#' \
         -e '/^RestartSteps=/d' -e '/^RestartMaxDelaySec=/d' "$UNIT.tmp"
  note "systemd $sdver: using Type=notify with ExecReload= (no notify-reload before 253)"
fi
chmod 0644 "$UNIT.tmp"
mv "$UNIT.tmp" "$UNIT"

if ! systemd_up; then
  say "systemd is not running here (chroot or image build): enable it with 'systemctl enable --now live-speaker' on the booted system"
  exit 0
fi
systemctl daemon-reload
systemctl enable live-speaker.service >/dev/null 2>&1
note "enabled (starts at boot)"
if [ "$start" = 0 ]; then
  say "not starting (--no-start): systemctl start live-speaker"
  exit 0
fi
if systemctl is-active --quiet live-speaker.service; then
  say "restarting live-speaker"
  systemctl reset-failed live-speaker.service 2>/dev/null || true
  systemctl restart live-speaker.service || true
else
  say "starting live-speaker"
  systemctl reset-failed live-speaker.service 2>/dev/null || true
  systemctl start live-speaker.service || true
fi
if systemctl is-active --quiet live-speaker.service; then
  systemctl --no-pager --lines=0 status live-speaker.service | sed -n '1,4p;/Status:/p' || true
  say "done: 'live-speaker ctl status' shows what it does, 'journalctl -u live-speaker -f' its log, 'live-speaker doctor' checks the setup"
else
  systemctl --no-pager --lines=15 status live-speaker.service || true
  die "live-speaker did not start: see above, 'journalctl -u live-speaker' and 'live-speaker doctor'"
fi
