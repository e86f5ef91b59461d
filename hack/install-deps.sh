#!/usr/bin/env bash
# Installs the system packages the tests need when they are missing:
#   - Node.js and npm, to install and run Azurite (tools/azurite);
#   - PostgreSQL's server binaries (initdb, postgres) from Debian's
#     postgresql package, started per test by internal/testenv;
#   - the node's container runtime (internal/testenv/node.go): containerd,
#     runc, the CNI plugins, and iproute2, iptables and conntrack for the
#     node's network namespace, its bridge and kube-proxy;
#   - Debian's CA bundle (ca-certificates), copied into the extension image
#     by `make image`;
#   - Debian's static busybox (busybox-static), the test application image
#     internal/testenv builds (internal/image.Busybox);
#   - Debian's Chromium (chromium), the browser the dashboard's tests drive
#     through chromedp (internal/browsertest), and fonts-liberation for
#     its screenshots.
# Needs root (or sudo) only when something is missing.
set -euo pipefail
need=()
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then
  need+=(postgresql)
fi
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
command -v ip >/dev/null || need+=(iproute2)
command -v iptables >/dev/null || need+=(iptables)
command -v conntrack >/dev/null || need+=(conntrack)
command -v nsenter >/dev/null || need+=(util-linux)
[ -s /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v chromium >/dev/null || need+=(chromium)
# Fonts for its screenshots (only recommended by the chromium package).
[ -d /usr/share/fonts/truetype/liberation ] || need+=(fonts-liberation)
# runuser/setpriv are not needed (testenv switches users itself), but the
# unprivileged user PostgreSQL runs as when the tests run as root must exist.
if [ "$(id -u)" = 0 ] && ! id nobody >/dev/null 2>&1 && [ -z "${ARCA_POSTGRES_USER:-}" ]; then
  echo "install-deps: creating user nobody to run PostgreSQL as"
  useradd --system --no-create-home --shell /usr/sbin/nologin nobody
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "install-deps: installing ${need[*]}"
  sudo=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install ${need[*]}" >&2; exit 1; }
    sudo=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  # policy-rc.d-less containers may try to start the packaged cluster; the
  # tests never use it, so a failing service start is harmless.
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
major=$(node --version | sed 's/^v\([0-9]*\).*/\1/')
if [ "$major" -lt 20 ]; then
  echo "install-deps: warning: Node.js $(node --version) is older than Azurite 3.37 supports (>= 20 works, >= 22 is declared)" >&2
fi
