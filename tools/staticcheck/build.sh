#!/usr/bin/env bash
# Builds staticcheck (pinned in go.mod) into $ARCA_TOOLS_DIR for `make lint`.
# Idempotent: skips the build when the stamp of this directory's inputs and
# the Go version match the recorded stamp.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${ARCA_TOOLS_DIR:-$HOME/.cache/arca/tools/bin}
mkdir -p "$out"
bins=(staticcheck)
stampfile="$out/.stamp-staticcheck"
stamp=$( (cd "$here" && go version && find . -type f \( -name go.mod -o -name go.sum -o -name '*.go' -o -name build.sh \) | LC_ALL=C sort | xargs sha256sum) | sha256sum | cut -d' ' -f1)
ok=1
for b in "${bins[@]}"; do [[ -x "$out/$b" ]] || ok=0; done
if [[ $ok == 1 && -f "$stampfile" && "$(cat "$stampfile")" == "$stamp" ]]; then
  exit 0
fi
cd "$here"
rm -f "$stampfile"
go build -buildvcs=false -trimpath -o "$out/staticcheck.tmp.$$" honnef.co/go/tools/cmd/staticcheck
mv "$out/staticcheck.tmp.$$" "$out/staticcheck"
echo "$stamp" > "$stampfile"
