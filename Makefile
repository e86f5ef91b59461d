# The README's two commands are `make demo` and `make test`; everything they
# need is installed and built by the targets below.
SHELL := /usr/bin/env bash
export ARCA_TOOLS_DIR ?= $(HOME)/.cache/arca/tools/bin
GO_TEST_FLAGS ?= -timeout 30m

.PHONY: fuzz all build image tools deps generate chart lint unit test demo bench bench-repo bench-engine bench-node bench-pod bench-vault bench-mover bench-copy bench-vault-restore bench-verify clean

all: build

build:
	go build -o bin/arca ./cmd/arca

# The extension image, built by hack/image with go-containerregistry (no
# Docker daemon): bin/arca-image.tar, a docker-archive for `docker load`,
# `kind load image-archive` or `ctr images import`. PUSH=REGISTRY/REPO:TAG
# also pushes it. VERSION, REVISION and SOURCE_DATE_EPOCH (the image time,
# the commit time by default) are its inputs: the same ones give the same
# digest.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
PUSH ?=
image:
	@[ -s /etc/ssl/certs/ca-certificates.crt ] || bash hack/install-deps.sh
	go run ./hack/image --version '$(VERSION)' --revision '$(REVISION)' --created '$(SOURCE_DATE_EPOCH)' \
	  --output bin/arca-image.tar $(if $(PUSH),--push '$(PUSH)')

# Debian packages, npm packages and pinned binaries the tests start.
deps:
	bash hack/install-deps.sh

tools: deps
	bash tools/build.sh

# Regenerates deepcopy code and CRDs from api/v1alpha1 (controller-gen).
generate: tools
	bash hack/generate.sh

# Regenerates the Helm chart charts/arca-extension from the source of
# `arca extension manifests` (internal/chart's tests fail when it is stale).
CHART_VERSION ?= dev
chart:
	go run ./hack/genchart -version $(CHART_VERSION)

lint: tools
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	go vet ./...
	"$(ARCA_TOOLS_DIR)/staticcheck" ./...

unit: tools
	go test $(GO_TEST_FLAGS) ./...

# Every fuzz target replays its seed corpus in `unit`; `fuzz` also tries
# FUZZTIME new inputs per target (about 25 targets); a count, not a
# duration (hack/fuzz.sh says why).
FUZZTIME ?= 2000x
fuzz:
	FUZZTIME=$(FUZZTIME) hack/fuzz.sh

# lint's `go vet ./...` runs every analyzer over every package and its
# tests first, so go test's own vet pass (a subset of those analyzers, with
# cache entries of its own: the facts of every dependency computed again)
# adds nothing here; `make unit` alone still vets.
test: GO_TEST_FLAGS += -vet=off
test: lint unit fuzz

# Benchmarks print their figures; results go into docs/benchmarks.md. Not
# part of `make test`: the 100,000-object engine run takes tens of minutes.
bench: bench-repo bench-engine bench-node bench-pod bench-vault bench-mover bench-copy bench-vault-restore bench-verify

bench-repo:
	go test ./internal/repo -run '^$$' -bench 'Repo(Stream|Small)' -benchtime 1x -timeout 30m

# repo.Copy into a second repository against a raw read of the source's
# files, same run; ARCA_BENCH_COPY_SIZE (MiB, default 256) resizes it.
bench-copy:
	go test ./internal/repo -run '^$$' -bench RepoCopy -benchtime 1x -timeout 30m

# The vault tier's data mover against raw read and raw write of the same
# files on the same disk: 1 GiB of mixed sizes (backup, unchanged and 5 %
# changed re-backups, restore) and 100,000 small files.
# ARCA_BENCH_MOVER_BYTES, ARCA_BENCH_MOVER_FILES and ARCA_BENCH_DIR resize
# and place it.
bench-mover:
	go test ./internal/volumedata -run '^$$' -bench Mover -benchtime 1x -timeout 60m

# The vault tier's restore pod on a real node (MinIO on the host) against a
# pod copying the same files into a new claim; ARCA_BENCH_RESTORE_BYTES
# resizes it (default 512 MiB).
bench-vault-restore: tools
	go test ./internal/extension -run '^$$' -bench VaultRestorePod -benchtime 1x -timeout 30m

# A verification job (check, sandbox restore, comparison, cleanup) of 10,000
# objects against the raw create and list of the same API server.
bench-verify: tools
	go test ./bench -run '^$$' -bench BenchmarkVerification -benchtime 1x -timeout 40m

bench-engine: tools
	go test ./bench -run '^$$' -bench BenchmarkEngine -benchtime 1x -timeout 80m
	ARCA_BENCH_OBJECTS=100000 go test ./bench -run '^$$' -bench BenchmarkEngine -benchtime 1x -timeout 80m

bench-node: tools
	go test ./bench -run '^$$' -bench BenchmarkNodeStart -benchtime 1x -count 3 -timeout 10m

# The vault at Azure's limits: 5,000 policies and 5,000 instances over 100
# clusters, SQLite and PostgreSQL (ARCA_BENCH_VAULT_* resize it).
bench-vault:
	go test ./bench -run '^$$' -bench BenchmarkVaultAtScale -benchtime 1x -timeout 120m

# The extension as a pod on a real node: its peak memory during a BackupJob
# and a RestoreJob, from the pod's cgroup.
bench-pod: tools
	go test ./bench -run '^$$' -bench BenchmarkExtensionPodMemory -benchtime 1x -timeout 60m
	ARCA_BENCH_OBJECTS=100000 go test ./bench -run '^$$' -bench BenchmarkExtensionPodMemory -benchtime 1x -timeout 120m

demo: tools build image
	bash hack/demo.sh

clean:
	rm -rf bin
