# ToyVmm build entry points. See README.md.
#   make          build guests and the VMM; the program lands at bin/toyvmm
#   make run      build everything and run the main demo
#   make test     build everything and run every test
#   make bench    run the scenario and micro benchmarks (see bench/RESULTS.md)

DOTNET ?= dotnet
CONFIG ?= Release
export DOTNET_CLI_TELEMETRY_OPTOUT := 1
export DOTNET_NOLOGO := 1
export DOTNET_SKIP_FIRST_TIME_EXPERIENCE := 1

.PHONY: all guests vmm run test test-long bench clean

all: guests vmm

guests:
	$(MAKE) -C guest

vmm:
	$(DOTNET) build ToyVmm.sln -c $(CONFIG) -nologo -v q
	$(DOTNET) publish vmm/ToyVmm.csproj -c $(CONFIG) -nologo -v q -o out/toyvmm
	mkdir -p bin
	ln -sf ../out/toyvmm/toyvmm bin/toyvmm

# The main demo: a guest whose working set is twice the host's frame pool runs
# while the host reclaims and is forced to page out every 5 ms, with the MMU
# invariant checker on; --stats shows where the time went.
run: all
	bin/toyvmm run guest/build/hello.elf
	bin/toyvmm run guest/build/memhot.elf --memory 64M --host-memory 16M --pageout-interval 5 --check --stats

# Long stress tests carry [Trait("Category","Long")]; `make test` runs them too,
# `make test-long` runs only them.
test: all
	$(DOTNET) test ToyVmm.sln -c $(CONFIG) --no-build -nologo

test-long: all
	$(DOTNET) test ToyVmm.sln -c $(CONFIG) --no-build -nologo --filter Category=Long

# Scenarios (guests natively and in the interpreter), per-operation invalidation
# latency, then the BenchmarkDotNet micro-benchmarks with short jobs. BENCH_FILTER
# narrows the last part.
BENCH_FILTER ?= *
bench: all
	$(DOTNET) run --project bench/ToyVmm.Bench.csproj -c $(CONFIG) --no-build -- scenario
	DOTNET_TieredCompilation=0 $(DOTNET) run --project bench/ToyVmm.Bench.csproj -c $(CONFIG) --no-build -- invalidate-latency
	cd bench && $(DOTNET) run --project ToyVmm.Bench.csproj -c $(CONFIG) --no-build -- --filter '$(BENCH_FILTER)' --job short

clean:
	$(MAKE) -C guest clean
	rm -rf bin out */bin */obj tests/*/bin tests/*/obj
