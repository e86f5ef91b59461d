#!/usr/bin/env bash
# Builds snapshot-controller and csi-snapshotter (external-snapshotter, pinned
# in go.mod) into $ARCA_TOOLS_DIR. Idempotent: skips the build when the stamp
# of this directory's inputs and the Go version match the recorded stamp.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${ARCA_TOOLS_DIR:-$HOME/.cache/arca/tools/bin}
mkdir -p "$out"
bins=(snapshot-controller csi-snapshotter)
stampfile="$out/.stamp-snapshotter"
stamp=$( (cd "$here" && go version && find . -type f \( -name go.mod -o -name go.sum -o -name '*.go' -o -name build.sh \) | LC_ALL=C sort | xargs sha256sum) | sha256sum | cut -d' ' -f1)
ok=1
for b in "${bins[@]}"; do [[ -x "$out/$b" ]] || ok=0; done
if [[ $ok == 1 && -f "$stampfile" && "$(cat "$stampfile")" == "$stamp" ]]; then
  exit 0
fi
cd "$here"
rm -f "$stampfile"
for b in "${bins[@]}"; do
  go build -buildvcs=false -trimpath -ldflags "-s -w -X main.version=v8.7.0" -o "$out/$b.tmp.$$" "github.com/kubernetes-csi/external-snapshotter/v8/cmd/$b"
  mv "$out/$b.tmp.$$" "$out/$b"
done
echo "$stamp" > "$stampfile"
