#!/usr/bin/env bash
# test.sh runs `go test` with the given arguments and prints a readable report
# ending in "tests: N passed, N failed, N skipped". Exit status is go test's,
# or failure when the report saw a failed test.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
go build -o "$root/bin/testsummary" ./hack/testsummary || exit 1
start=$(date +%s)
go test -json "$@" 2>&1 | "$root/bin/testsummary"
status=("${PIPESTATUS[@]}")
echo "test time: $(( $(date +%s) - start ))s"
if [[ ${status[0]} -ne 0 || ${status[1]} -ne 0 ]]; then exit 1; fi
