#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
# kube-proxy (k8s.io/kubernetes, pinned in go.mod) and mock-csi-driver into $ARCA_TOOLS_DIR. Idempotent: skips the
# build when the stamp of this directory's inputs and the Go version match
# the stamp recorded next to the binaries.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${ARCA_TOOLS_DIR:-$HOME/.cache/arca/tools/bin}
mkdir -p "$out"
version=v1.37.2
bins=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy mock-csi-driver)
stampfile="$out/.stamp-kubernetes"
stamp=$( (cd "$here" && go version && find . -type f \( -name go.mod -o -name go.sum -o -name '*.go' -o -name build.sh \) | LC_ALL=C sort | xargs sha256sum) | sha256sum | cut -d' ' -f1)
ok=1
for b in "${bins[@]}"; do [[ -x "$out/$b" ]] || ok=0; done
if [[ $ok == 1 && -f "$stampfile" && "$(cat "$stampfile")" == "$stamp" ]]; then
  exit 0
fi
cd "$here"
rm -f "$stampfile"
# Without these, discovery (/version) reports v0.0.0-master.
major=${version#v}; major=${major%%.*}
minor=${version#v*.}; minor=${minor%%.*}
ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
build() { # build <package> <binary>
  go build -buildvcs=false -trimpath -ldflags "-s -w$ldflags" -o "$out/$2.tmp.$$" "$1"
  mv "$out/$2.tmp.$$" "$out/$2"
}
# The API server first: it is what most tests wait for.
build k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver
build k8s.io/kubernetes/cmd/kube-controller-manager kube-controller-manager
# The node: scheduler, kubelet and kube-proxy (internal/testenv/node.go).
build k8s.io/kubernetes/cmd/kube-scheduler kube-scheduler
build k8s.io/kubernetes/cmd/kubelet kubelet
build k8s.io/kubernetes/cmd/kube-proxy kube-proxy
build ./mock-csi-driver mock-csi-driver
echo "$stamp" > "$stampfile"
