#!/usr/bin/env bash
# Regenerates what is generated from api/v1alpha1: deepcopy functions
# (api/v1alpha1/zz_generated.deepcopy.go) and the CRDs (config/crd/*.yaml,
# embedded by internal/extension for `arca extension install`). Run after
# changing any *_types.go and commit the result; internal/extension's
# TestGeneratedFilesUpToDate fails when the committed files differ from what
# this script produces.
#
#   hack/generate.sh            regenerate in place
#   hack/generate.sh OUTDIR     write the CRDs and the deepcopy file to OUTDIR
#                               instead (the up-to-date test uses it)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export ARCA_TOOLS_DIR=${ARCA_TOOLS_DIR:-$HOME/.cache/arca/tools/bin}
bash "$root/tools/controller-gen/build.sh"
cg="$ARCA_TOOLS_DIR/controller-gen"
crds=${1:-config/crd}
cd "$root"
if [[ $# -eq 0 ]]; then
  "$cg" object paths=./api/v1alpha1/...
else
  "$cg" object paths=./api/v1alpha1/... output:object:dir="$1"
fi
# controller-gen reports json.RawMessage fields (in config_types.go, which
# carries no schema markers) as "conflicting types in allOf branches ...
# string vs array" and still writes every CRD; hack/crdfix gives those fields
# the right schema. Any other error fails the script.
errs=$(mktemp)
trap 'rm -f "$errs"' EXIT
"$cg" crd paths=./api/v1alpha1/... output:crd:artifacts:config="$crds" 2>"$errs" || true
if grep -v -e 'conflicting types in allOf branches in schema: string vs array' \
           -e '^Error: not all generators ran successfully' -e '^run `controller-gen' "$errs" | grep -q .; then
  cat "$errs" >&2
  exit 1
fi
go run ./hack/crdfix "$crds"
# The Helm chart carries the CRDs and the manifests' shape: regenerate it too.
if [[ $# -eq 0 ]]; then
  go run ./hack/genchart -version dev
fi
