#!/usr/bin/env bash
# verify-generated.sh regenerates deepcopy code and CRDs into a scratch copy of
# the tree and fails, naming the files, if any differs from what is committed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cd "$root"
# Copy the tracked and untracked-but-not-ignored files, not bin/.
git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$scratch"
(cd "$scratch" && "$root/bin/controller-gen" object paths=./apis/... \
  && "$root/bin/controller-gen" crd paths=./apis/... output:crd:dir=charts/nodewright/crds \
  && go run ./hack/crdpatch charts/nodewright/crds) >/dev/null
stale=0
for f in $(cd "$scratch" && ls apis/v1/zz_generated.deepcopy.go apis/aws/v1/zz_generated.deepcopy.go charts/nodewright/crds/*.yaml); do
  if ! cmp -s "$scratch/$f" "$root/$f"; then
    echo "stale generated file: $f (run make generate)"
    stale=1
  fi
done
exit $stale
