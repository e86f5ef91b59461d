#!/usr/bin/env bash
# Builds every pinned test tool into $ARCA_TOOLS_DIR (default
# ~/.cache/arca/tools/bin), outside the clone so that every clone on a machine
# shares it. Each tools/<name>/build.sh is idempotent: it records a stamp of
# its inputs and rebuilds only when they change.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export ARCA_TOOLS_DIR=${ARCA_TOOLS_DIR:-$HOME/.cache/arca/tools/bin}
mkdir -p "$ARCA_TOOLS_DIR"
for script in "$here"/*/build.sh; do
  name=$(basename "$(dirname "$script")")
  start=$(date +%s)
  bash "$script"
  echo "tools: $name ready ($(( $(date +%s) - start ))s)"
done
