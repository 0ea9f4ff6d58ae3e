#!/usr/bin/env bash
# Edits live-speaker's block in the Raspberry Pi firmware's config.txt: the
# button's pull (gpio=17=ip,pu; sysfs GPIO cannot set a pull, the firmware
# does it at boot) and dtparam=spi=on for an LED ring on SPI. The block is
# marked, so that re-running replaces exactly it and --uninstall removes
# exactly it; nothing else in the file is touched. Sourced by install.sh,
# or run on its own:
#
#   scripts/boot-config.sh set FILE [LINE...]   write the block (no lines: remove it)
#   scripts/boot-config.sh remove FILE          remove the block
#   scripts/boot-config.sh find                 print the config.txt in use (bookworm+: /boot/firmware)
#
# `set` and `remove` print "changed" when the file changed (a reboot applies it)
# and "unchanged" otherwise. The file is replaced atomically, keeping its mode.
set -euo pipefail

BOOTCFG_BEGIN='# >>> live-speaker: written by scripts/install.sh (removed by --uninstall); edit config.yaml instead'
BOOTCFG_END='# <<< live-speaker'

bootcfg_find() {
  local f
  for f in /boot/firmware/config.txt /boot/config.txt; do
    [ -f "$f" ] && { echo "$f"; return 0; }
  done
  return 1
}

# The file without our block (and without the blank line we put before it).
_bootcfg_strip() {
  awk -v b="$BOOTCFG_BEGIN" -v e="$BOOTCFG_END" '
    $0 == b { skip = 1; if (held) held = 0; next }
    skip && $0 == e { skip = 0; next }
    skip { next }
    { if (held) print ""; held = 0 }
    /^$/ { held = 1; next }
    { print }
    END { if (held && !skip) print "" }
  ' "$1"
}

# bootcfg_set FILE LINE...: replace (or add, at the end, under [all]) our block.
bootcfg_set() {
  local file=$1; shift
  [ -f "$file" ] || { echo "boot-config: $file does not exist" >&2; return 1; }
  local tmp="$file.live-speaker.tmp"
  _bootcfg_strip "$file" >"$tmp"
  if [ $# -gt 0 ]; then
    # [all]: the block must apply to every model, whatever section the file ends in.
    { [ -s "$tmp" ] && [ -n "$(tail -c1 "$tmp")" ] && echo; echo; echo "$BOOTCFG_BEGIN"; echo '[all]'; printf '%s\n' "$@"; echo "$BOOTCFG_END"; } >>"$tmp"
  fi
  if cmp -s "$tmp" "$file"; then rm -f "$tmp"; echo unchanged; return 0; fi
  chmod --reference="$file" "$tmp" 2>/dev/null || true
  mv "$tmp" "$file"
  echo changed
}

bootcfg_remove() { bootcfg_set "$1"; }

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  cmd=${1:-}; shift || true
  case "$cmd" in
    set) bootcfg_set "$@" ;;
    remove) bootcfg_remove "$@" ;;
    find) bootcfg_find ;;
    *) echo "usage: $0 set FILE [LINE...] | remove FILE | find" >&2; exit 2 ;;
  esac
fi
