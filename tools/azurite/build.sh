#!/usr/bin/env bash
# Installs Azurite, pinned by package.json and package-lock.json, into the
# tools cache with `npm ci`, and puts an azurite-blob launcher into
# $ARCA_TOOLS_DIR. Idempotent: the lock file's hash and the Node version are
# the stamp.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${ARCA_TOOLS_DIR:-$HOME/.cache/arca/tools/bin}
pkg="$out/.azurite"
mkdir -p "$out"
command -v npm >/dev/null || { echo "tools/azurite: npm not found: run hack/install-deps.sh (make deps)" >&2; exit 1; }
stamp=$(cat "$here/package.json" "$here/package-lock.json" <(node --version) | sha256sum | cut -d' ' -f1)
if [ -x "$out/azurite-blob" ] && [ -f "$pkg/.stamp" ] && [ "$(cat "$pkg/.stamp")" = "$stamp" ]; then
  exit 0
fi
echo "tools: installing azurite $(grep -o '"azurite": *"[^"]*"' "$here/package.json" | cut -d'"' -f4)"
rm -rf "$pkg"
mkdir -p "$pkg"
cp "$here/package.json" "$here/package-lock.json" "$pkg/"
# Azurite declares node >= 22 but runs its blob service on Node 20 (Debian's);
# --engine-strict=false keeps npm from refusing.
(cd "$pkg" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --engine-strict=false --loglevel=error)
cat >"$out/azurite-blob.tmp" <<LAUNCHER
#!/bin/sh
exec node "$pkg/node_modules/azurite/dist/src/blob/main.js" "\$@"
LAUNCHER
chmod +x "$out/azurite-blob.tmp"
mv "$out/azurite-blob.tmp" "$out/azurite-blob"
echo "$stamp" >"$pkg/.stamp"
