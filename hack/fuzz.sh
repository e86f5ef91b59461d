#!/usr/bin/env bash
# Runs every fuzz target in the module for FUZZTIME each (default 2000x:
# two thousand new inputs). The budget is a count, not a duration: with a
# duration, Go 1.26's fuzz coordinator can report its own deadline as a
# failure ("context deadline exceeded", no failing input written) when a
# worker is mid-input as time runs out (go.dev/issue/75804, fixed in 1.27).
# CI failed on exactly that on a loaded machine. A count has no deadline.
# `go test` already replays each target's committed seed corpus (f.Add and
# testdata/fuzz/<Target>/); this adds a short run of new inputs, so a
# decoder that panics on something near its seeds fails `make test`.
# A failing input is written to testdata/fuzz/<Target>/ by go test: commit
# it with the fix, and it stays a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${FUZZTIME:-2000x}"
failed=()
count=0
# Each line: <package dir> <target>.
while read -r dir target; do
	count=$((count + 1))
	if ! out=$(go test "./$dir" -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" 2>&1); then
		echo "$out"
		failed+=("$dir $target")
	fi
done < <(grep -rl --include='*_test.go' '^func Fuzz' . | sort | while read -r f; do
	grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //' | while read -r t; do
		echo "$(dirname "${f#./}") $t"
	done
done)
if [ "$count" -eq 0 ]; then
	echo "fuzz: no fuzz targets found; is this the arca module?" >&2
	exit 1
fi
if [ "${#failed[@]}" -gt 0 ]; then
	printf 'fuzz: %d of %d targets failed:\n' "${#failed[@]}" "$count" >&2
	printf '  %s\n' "${failed[@]}" >&2
	echo "fuzz: the failing input is in <package>/testdata/fuzz/<target>/; rerun it with go test -run '<target>/<file>'" >&2
	exit 1
fi
echo "fuzz: $count targets, $fuzztime each: no failures"
