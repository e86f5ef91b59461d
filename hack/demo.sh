#!/usr/bin/env bash
# `make demo`: a real local cluster, a sample application, backup, loss,
# restore and verification, driven through the arca binary.
set -euo pipefail
cd "$(dirname "$0")/.."
exec go run ./hack/demo --arca bin/arca "$@"
