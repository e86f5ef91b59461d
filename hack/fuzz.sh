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
# A failing input is written to testdata/fuzz/<Target>/ by the test binary:
# commit it with the fix, and it stays a regression test.
#
# One instrumented test binary per package, run once per target: `go test
# -fuzz` would load, check and link the package again for every target
# (internal/repo alone has ten). The binary is run the way `go test -fuzz`
# runs it: from the package's directory (where testdata/fuzz/ is), with the
# fuzz cache in $GOCACHE/fuzz/<import path>, so inputs found interesting
# by earlier runs of either are replayed.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${FUZZTIME:-2000x}"
fuzzcache="$(go env GOCACHE)/fuzz"
bindir=$(mktemp -d "${TMPDIR:-/tmp}/arca-fuzz-XXXXXX")
trap 'rm -rf "$bindir"' EXIT
failed=()
count=0
# Each line: <package dir> <target>, sorted so that a package's targets are
# together.
targets=$(grep -rl --include='*_test.go' '^func Fuzz' . | sort | while read -r f; do
	grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //' | while read -r t; do
		echo "$(dirname "${f#./}") $t"
	done
done | sort)
built=""
bin=""
while read -r dir target; do
	[ -n "$dir" ] || continue
	count=$((count + 1))
	if [ "$dir" != "$built" ]; then
		built=$dir
		bin="$bindir/$(echo "$dir" | tr / _).test"
		# -fuzz at build time is what makes go test instrument the package
		# for coverage guidance; the pattern itself is only used when run.
		if ! importpath=$(go list "./$dir") || ! out=$(go test -c -o "$bin" -fuzz . "./$dir" 2>&1); then
			echo "$out"
			echo "fuzz: building the fuzz test binary of ./$dir failed" >&2
			bin=""
		fi
	fi
	if [ -z "$bin" ]; then
		failed+=("$dir $target (build failed)")
		continue
	fi
	if ! out=$(cd "$dir" && "$bin" -test.run '^$' -test.fuzz "^${target}\$" -test.fuzztime "$fuzztime" \
		-test.fuzzcachedir "$fuzzcache/$importpath" -test.paniconexit0 2>&1); then
		echo "$out"
		failed+=("$dir $target")
	fi
done <<<"$targets"
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
echo "fuzz: $count targets in $(cut -d' ' -f1 <<<"$targets" | sort -u | wc -l) package(s), $fuzztime each: no failures"
