#!/usr/bin/env bash
# The vendored `speaker` package: speaker@0.5.5 exactly as the npm registry
# ships it, plus arm64.patch (see README.md here), packed as the tarball that
# package.json depends on.
#
#   vendor/speaker/pack.sh           rebuild speaker-0.5.5-arm64.tgz from the registry's tarball + the patch
#   vendor/speaker/pack.sh --check   exit 0 when the committed tarball holds exactly that, 1 otherwise
#
# Needs npm (it fetches speaker@0.5.5 from the registry or npm's cache and
# checks it against the integrity below), GNU tar, gzip and GNU patch. After a
# rebuild, run `npm install` once so package-lock.json records the new
# tarball's integrity.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
UPSTREAM=speaker@0.5.5
# dist.integrity of speaker@0.5.5 on registry.npmjs.org (npm view speaker@0.5.5 dist.integrity)
UPSTREAM_INTEGRITY=sha512-IBeMZUITigYBO139h0+1MAgBHNZF55GFJN4U/Box35Sg49cfqYkbCO92TXoCUy22Ast08zfqKuXLvPxq9CWwLw==
PATCH=$here/arm64.patch
OUT=$here/speaker-0.5.5-arm64.tgz

mode=pack
case "${1:-}" in
  "") ;;
  --check) mode=check ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

sri() { node -e 'const c=require("crypto");process.stdout.write("sha512-"+c.createHash("sha512").update(require("fs").readFileSync(process.argv[1])).digest("base64"))' "$1"; }

# The upstream tarball, verified.
(cd "$tmp" && npm pack "$UPSTREAM" --silent --pack-destination "$tmp" >/dev/null 2>"$tmp/npm-pack.log") \
  || { cat "$tmp/npm-pack.log" >&2; echo "pack.sh: npm pack $UPSTREAM failed" >&2; exit 1; }
up=$(ls "$tmp"/speaker-*.tgz)
[ "$(sri "$up")" = "$UPSTREAM_INTEGRITY" ] \
  || { echo "pack.sh: $UPSTREAM's tarball does not match its registry integrity $UPSTREAM_INTEGRITY" >&2; exit 1; }

# Upstream + the patch.
mkdir "$tmp/want"
tar -xzf "$up" -C "$tmp/want"
(cd "$tmp/want/package" && patch -p1 --quiet --no-backup-if-mismatch --force <"$PATCH" >"$tmp/patch.log" 2>&1) \
  || { cat "$tmp/patch.log" >&2; echo "pack.sh: $PATCH does not apply to $UPSTREAM" >&2; exit 1; }

if [ "$mode" = check ]; then
  [ -f "$OUT" ] || { echo "pack.sh: $OUT is missing" >&2; exit 1; }
  mkdir "$tmp/have"
  tar -xzf "$OUT" -C "$tmp/have"
  if diff -r "$tmp/want" "$tmp/have" >"$tmp/diff" 2>&1; then
    echo "pack.sh: $(basename "$OUT") is $UPSTREAM + $(basename "$PATCH"), nothing else"
    exit 0
  fi
  head -n 40 "$tmp/diff" >&2
  echo "pack.sh: $(basename "$OUT") differs from $UPSTREAM + $(basename "$PATCH") (rebuild: $0)" >&2
  exit 1
fi

# Reproducible: sorted entries, fixed owner and time (npm's own), no gzip timestamp.
tar -C "$tmp/want" --sort=name --owner=0 --group=0 --numeric-owner --mtime='1985-10-26 08:15:00 UTC' \
  --format=ustar -cf - package | gzip -9n >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "pack.sh: wrote $OUT ($(sri "$OUT"))"
