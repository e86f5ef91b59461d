#!/usr/bin/env bash
# Builds controller-gen (pinned in go.mod) into $ARCA_TOOLS_DIR for hack/generate.sh.
# Idempotent: skips the build when the stamp of this directory's inputs and
# the Go version match the recorded stamp.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${ARCA_TOOLS_DIR:-$HOME/.cache/arca/tools/bin}
mkdir -p "$out"
bins=(controller-gen)
stampfile="$out/.stamp-controller-gen"
stamp=$( (cd "$here" && go version && find . -type f \( -name go.mod -o -name go.sum -o -name '*.go' -o -name build.sh \) | LC_ALL=C sort | xargs sha256sum) | sha256sum | cut -d' ' -f1)
ok=1
for b in "${bins[@]}"; do [[ -x "$out/$b" ]] || ok=0; done
if [[ $ok == 1 && -f "$stampfile" && "$(cat "$stampfile")" == "$stamp" ]]; then
  exit 0
fi
cd "$here"
rm -f "$stampfile"
go build -buildvcs=false -trimpath -o "$out/controller-gen.tmp" sigs.k8s.io/controller-tools/cmd/controller-gen
mv "$out/controller-gen.tmp" "$out/controller-gen"
echo "$stamp" > "$stampfile"
