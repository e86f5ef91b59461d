#!/usr/bin/env bash
# Installs the system packages the tests need when they are missing.
set -euo pipefail
need=()
command -v node >/dev/null || need+=(nodejs npm)
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then
  need+=(postgresql)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "install-deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
