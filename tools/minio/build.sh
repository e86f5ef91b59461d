#!/usr/bin/env bash
# Builds the MinIO server pinned in tools/minio/go.mod (its own module, the
# server recorded with `go get -tool`) into $ARCA_TOOLS_DIR.
# Idempotent: a stamp of go.mod/go.sum and the Go version decides whether to
# rebuild. The first build takes about two minutes on two cores.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${ARCA_TOOLS_DIR:-$HOME/.cache/arca/tools/bin}
mkdir -p "$out"
stamp_file="$out/.stamp-minio"
stamp=$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" <(go version) | sha256sum | cut -d' ' -f1)
if [ -x "$out/minio" ] && [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ]; then
  exit 0
fi
version=$(cd "$here" && go list -m -f '{{.Version}}' github.com/minio/minio)
echo "tools: building minio $version"
cd "$here"
# GOFLAGS from the caller (for example -mod=vendor) must not leak into this
# separate module.
GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -o "$out/minio.tmp" github.com/minio/minio
mv "$out/minio.tmp" "$out/minio"
echo "$stamp" >"$stamp_file"
