# gpufleet developer tasks. `make demo` and `make test` work on a fresh machine with Go, Java 17,
# Maven and npm: the dev services (Kafka broker jars, libchdb.so) are fetched into .cache/ on first use.

GO        ?= go
BIN       := bin/gpufleet
DEMO_ARGS ?= --for 30s
export GOFLAGS ?= -buildvcs=false

.PHONY: all build agent plugin-test plugin-backend demo test chaos test-race fuzz vet fmt fmt-check generate tidy-check bench libchdb kafka-up kafka-down ci

all: vet build test

# GOFLAGS carries -buildvcs=false (a clone without .git must build), so the commit is stamped here;
# outside a git checkout it stays empty and `gpufleet version` says unknown.
LDFLAGS := -X main.buildCommit=$(shell git rev-parse HEAD 2>/dev/null)

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/gpufleet

# What runs on GPU nodes: agent and simulate only, no ClickHouse code linked (24 MiB resident
# against 34 for the full binary: deploy/dev/agent-rss.sh).
agent:
	$(GO) build -tags agentonly -ldflags "$(LDFLAGS)" -o bin/gpufleet-agent ./cmd/gpufleet

libchdb:
	@deploy/dev/chdb.sh install >/dev/null

# The whole pipeline in one process: simulated fleet, in-process broker, embedded ClickHouse.
demo: build libchdb
	GPUFLEET_LIBCHDB=$$(deploy/dev/chdb.sh install) ./$(BIN) demo $(DEMO_ARGS)

# Unit, behaviour and end-to-end tests. Tests that need Kafka start a real broker themselves
# (deploy/dev/kafka.sh); tests that need ClickHouse load the real engine (libchdb.so).
test: libchdb plugin-test
	deploy/dev/kafka.sh install
	deploy/dev/test-packages.sh install
	GPUFLEET_LIBCHDB=$$(deploy/dev/chdb.sh install) $(GO) test -count=1 -timeout 30m ./...

# The Grafana plugin's frontend: dependencies from package-lock.json, type check, lint, the editors'
# and datasource's unit tests, then the whole plugin build (module.js, plugin.json and the backend
# binaries in plugin/dist), checked file by file.
plugin-test:
	cd plugin && npm ci --no-audit --no-fund && npm run typecheck && npm run lint && npm test && npm run build
	deploy/dev/check-plugin-dist.sh plugin/dist

# The fault matrix (internal/chaos): every fault of docs/chaos.md against real brokers (one, and a
# three-broker cluster) and chDB, each bounded in time with fixed seeds; prints one table and
# fails on any sample or event lost or duplicated, in gpu_samples, gpu_events or any rollup.
# Mounting the spool's tmpfs needs root. It runs twice: with gpu_1m and gpu_1h made by their views
# (ingest --fold=false), then folded by ingest (the default). CHAOS_REPORT names a file the first
# table is also written to, and CHAOS_REPORT.fold the second.
CHAOS_REPORT ?=
chaos: libchdb
	deploy/dev/kafka.sh install
	GPUFLEET_LIBCHDB=$$(deploy/dev/chdb.sh install) GPUFLEET_CHAOS_REPORT=$(CHAOS_REPORT) \
		$(GO) test -tags chaos -count=1 -timeout 30m -run TestFaultMatrix -v ./internal/chaos/
	GPUFLEET_CHAOS_FOLD=1 GPUFLEET_LIBCHDB=$$(deploy/dev/chdb.sh install) GPUFLEET_CHAOS_REPORT=$(if $(CHAOS_REPORT),$(CHAOS_REPORT).fold) \
		$(GO) test -tags chaos -count=1 -timeout 30m -run TestFaultMatrix -v ./internal/chaos/

test-race: libchdb
	GPUFLEET_LIBCHDB=$$(deploy/dev/chdb.sh install) $(GO) test -race -count=1 -timeout 30m ./...

# Every fuzz target for FUZZTIME each, one after the other (`go test -fuzz` takes one target per
# run). Their seed corpora (f.Add and testdata/fuzz/) already run in `make test`; a crasher the
# fuzzer finds is written to the package's testdata/fuzz/<Name>/ and becomes a seed once committed.
FUZZTIME ?= 20s
FUZZ_TARGETS := \
	./internal/wire:FuzzDecodeSamples \
	./internal/wire:FuzzDecodeEvents \
	./internal/wire:FuzzSampleDecoderMatchesProto \
	./ingest:FuzzBuildSamples \
	./ingest:FuzzBuildEvents \
	./agent/spool:FuzzReadRecord \
	./agent/spool:FuzzParseState \
	./agent/attribution:FuzzSlurmJobFromCgroup \
	./agent/attribution:FuzzMappingDir \
	./agent/attribution:FuzzPodResourcesDecode \
	./agent/attribution:FuzzPodResourcesResponse \
	./agent/sim:FuzzParseInjection \
	./internal/benchtable:FuzzParse \
	./internal/store:FuzzParseJSONCompact \
	./internal/store/backend/redact:FuzzDSN \
	./query:FuzzParseFilter \
	./query:FuzzParseDims \
	./query:FuzzRunSQL \
	./query/guard:FuzzCheckTree \
	./query/httpapi:FuzzQueryString \
	./plugin/pkg/plugin:FuzzQueryJSON
fuzz: libchdb
	@set -e; export GPUFLEET_LIBCHDB=$$(deploy/dev/chdb.sh install); \
	for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} in $${t%%:*} for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZTIME) $${t%%:*}/; \
	done

vet:
	$(GO) vet ./...
	$(GO) vet -tags agentonly ./cmd/gpufleet/
	$(GO) vet -tags nochdb ./internal/store/backend/ ./plugin/pkg/...
	$(GO) vet -tags chaos ./internal/chaos/

fmt:
	gofmt -w $$(git ls-files '*.go')

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$out" ] || { echo "gofmt needed:"; echo "$$out"; exit 1; }

# Regenerates internal/wire/wirepb from internal/wire/gpufleet.proto (needs protoc: apt-get install protobuf-compiler).
generate:
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	PATH="$$($(GO) env GOPATH)/bin:$$PATH" $(GO) generate ./internal/wire/...

tidy-check:
	$(GO) mod tidy -diff

# Every benchmark: the ones that set up a fleet, a broker or a day of data run once (-benchtime
# 1x, the figure is that pass), the small ones for a second each; one package at a time (-p 1),
# so that two benchmarks never share the cores. Raw output (benchstat reads it)
# in $(BENCH_OUT).txt, the table of figures, goals and ratios on stdout and in $(BENCH_OUT).md.
BENCH_OUT ?= .cache/bench
BENCH_ONCE := EndToEnd|RollupCost|Detect|OTelVsGpufleet|BytesPerValue|PowerRollup|DashboardPanels|FleetP99Trend|FailureReports|QueryDataOverhead|LargestAnswer|SpoolDrain|SendCycle|PrepareBlock
bench: libchdb
	@mkdir -p $(dir $(BENCH_OUT))
	@set -e; export GPUFLEET_LIBCHDB=$$(deploy/dev/chdb.sh install); \
	$(GO) test -p 1 -run '^$$' -bench '^Benchmark($(BENCH_ONCE))$$' -benchtime 1x -benchmem -timeout 60m ./... > $(BENCH_OUT).txt; \
	$(GO) test -p 1 -run '^$$' -bench . -skip '^Benchmark($(BENCH_ONCE))$$' -benchmem ./... >> $(BENCH_OUT).txt
	$(GO) run ./cmd/benchtable -o $(BENCH_OUT).md < $(BENCH_OUT).txt
	@echo "raw: $(BENCH_OUT).txt  table: $(BENCH_OUT).md"

# A broker for running agent/ingest by hand: 127.0.0.1:19092, data in .cache/kafka-dev.
kafka-up:
	deploy/dev/kafka.sh start .cache/kafka-dev 19092

kafka-down:
	deploy/dev/kafka.sh stop .cache/kafka-dev

ci: fmt-check vet test

# The Grafana datasource backend for the platforms Grafana servers run on, named as Grafana expects:
# gpx_<id>_<os>_<arch>. plugin/dist's plugin.json and module.js come from the frontend build
# (`cd plugin && npm run build`, which ends by calling this).
PLUGIN_PLATFORMS ?= linux/amd64 linux/arm64
# nochdb: release binaries without the embedded engine are static (see internal/store/backend/nochdb.go);
# PLUGIN_TAGS= builds them with chDB mode for glibc Grafana images.
PLUGIN_TAGS ?= nochdb
plugin-backend:
	mkdir -p plugin/dist
	for p in $(PLUGIN_PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -tags "$(PLUGIN_TAGS)" -trimpath -ldflags '-s -w' \
			-o plugin/dist/gpx_gpufleet-fleet-datasource_$${os}_$${arch} ./plugin/pkg || exit 1; \
	done
