#!/usr/bin/env bash
# build-tools.sh builds the pinned test binaries from hack/tools/go.mod into bin/.
# A stamp file records the hash of go.mod and go.sum, so a warm run is a no-op and a
# changed pin rebuilds everything. Go's build cache makes even a rebuild cheap after
# the first cold one (~20 minutes on 2 cores).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/bin"
tools="$root/hack/tools"
mkdir -p "$bin"

k8s_version=$(awk '$1=="k8s.io/kubernetes"{print $2; exit}' "$tools/go.mod")
major=$(echo "${k8s_version#v}" | cut -d. -f1)
minor=$(echo "${k8s_version#v}" | cut -d. -f2)
helm_mod="$root/hack/helm"
stamp_want=$(cat "$tools/go.mod" "$tools/go.sum" "$helm_mod/go.mod" "$helm_mod/go.sum" "$0" | sha256sum | cut -c1-16)
stamp="$bin/.tools-stamp"

names=(etcd kube-apiserver kube-scheduler kube-controller-manager kwok controller-gen helm)
all_present=true
for n in "${names[@]}"; do [[ -x "$bin/$n" ]] || all_present=false; done
if $all_present && [[ -f "$stamp" && "$(cat "$stamp")" == "$stamp_want" ]]; then
  exit 0
fi

# Kubernetes components report their version from these variables; without them
# they say v0.0.0-master, which kubectl, Helm and discovery clients cannot parse.
k8s_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=${k8s_version} \
 -X k8s.io/component-base/version.gitMajor=${major} -X k8s.io/component-base/version.gitMinor=${minor}"

build() { # build NAME PACKAGE [LDFLAGS] [MODULE DIR]
  local name=$1 pkg=$2 ldflags=${3:--s -w} dir=${4:-$tools}
  echo "building $name ($pkg)" >&2
  (cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$bin/$name.tmp" "$pkg")
  mv "$bin/$name.tmp" "$bin/$name"
}

start=$(date +%s)
build etcd go.etcd.io/etcd/server/v3
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags"
build kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler "$k8s_ldflags"
build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$k8s_ldflags"
build kwok sigs.k8s.io/kwok/cmd/kwok
build controller-gen sigs.k8s.io/controller-tools/cmd/controller-gen
build helm helm.sh/helm/v4/cmd/helm "-s -w" "$helm_mod"
echo "$stamp_want" > "$stamp"
echo "tools built in $(( $(date +%s) - start ))s into $bin" >&2
