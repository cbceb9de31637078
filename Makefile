# ToyVmm build entry points. See README.md.
#   make          build guests and the VMM; the program lands at bin/toyvmm
#   make run      build everything and run the main demo
#   make test     build everything and run every test
#   make bench    run the scenario and micro benchmarks (see bench/RESULTS.md)
#   make soak     every guest under every safe configuration for SOAK_SECONDS (300)
#   make fuzz     coverage-guided fuzzing of every target for FUZZ_SECONDS (300) each
# All are incremental: with nothing changed they do not start dotnet to build.

DOTNET ?= dotnet
# Every test is bounded; should one still hang, the run stops with the hung test's
# name and a dump of its threads (in tests/*/TestResults) instead of waiting for ever.
TEST_GUARD ?= --blame-hang-timeout 10m --blame-hang-dump-type mini
CONFIG ?= Release
export DOTNET_CLI_TELEMETRY_OPTOUT := 1
export DOTNET_NOLOGO := 1
export DOTNET_SKIP_FIRST_TIME_EXPERIENCE := 1

.PHONY: all guests vmm run test test-long bench bench-qemu tick-stall soak fuzz clean FORCE

all: guests vmm

guests:
	$(MAKE) -C guest

# dotnet runs only when one of its inputs changed since it last succeeded:
# out/stamps/build-<config> stands for `dotnet build` of the solution,
# out/stamps/publish-<config> for the publish of the program to bin/toyvmm.
# The inputs are every file of the four projects but build outputs and docs,
# and the solution and props files. Their list is an input too (rewritten
# only when it changes), so adding or deleting a file also rebuilds.
STAMPS := out/stamps
DOTNET_INPUTS := ToyVmm.sln Directory.Build.props Directory.Packages.props \
	$(shell find vmm mmu tests bench \( -name bin -o -name obj -o -name TestResults \
		-o -name BenchmarkDotNet.Artifacts -o -name '.*' -o -path tests/fuzz \) -prune -o -type f ! -name '*.md' -print)
PUBLISH_INPUTS := ToyVmm.sln Directory.Build.props Directory.Packages.props \
	$(filter vmm/% mmu/%,$(DOTNET_INPUTS))
$(shell mkdir -p $(STAMPS); echo '$(DOTNET_INPUTS)' | cmp -s - $(STAMPS)/inputs \
	|| echo '$(DOTNET_INPUTS)' > $(STAMPS)/inputs)

vmm: $(STAMPS)/build-$(CONFIG) $(STAMPS)/publish-$(CONFIG) bin/toyvmm

$(STAMPS)/build-$(CONFIG): $(DOTNET_INPUTS) $(STAMPS)/inputs
	$(DOTNET) build ToyVmm.sln -c $(CONFIG) -nologo -v q
	touch $@

# After the solution build when both are due (order only): the two must not
# write vmm/obj at once under make -j. Also due when the published program is
# gone though the stamp is not.
$(STAMPS)/publish-$(CONFIG): $(PUBLISH_INPUTS) $(STAMPS)/inputs $(if $(wildcard out/toyvmm/toyvmm),,FORCE) \
		| $(STAMPS)/build-$(CONFIG)
	$(DOTNET) publish vmm/ToyVmm.csproj -c $(CONFIG) -nologo -v q -r $(RID) --self-contained false -o out/toyvmm
	touch $@

# The program is published ReadyToRun (vmm/ToyVmm.csproj), which needs this machine's
# runtime identifier; it still runs on the shared .NET runtime installed here.
RID ?= linux-$(patsubst x86_64,x64,$(patsubst aarch64,arm64,$(shell uname -m)))

# Only when missing: the link's target (out/toyvmm/toyvmm) keeps its own time.
bin/toyvmm: | $(STAMPS)/publish-$(CONFIG)
	mkdir -p bin
	ln -sf ../out/toyvmm/toyvmm bin/toyvmm

# The main demo: a memory guest with four times as much RAM as the host has
# frames (its working set, half of RAM, is twice the frame pool) on 2 vCPUs,
# while the host reclaims and is forced to page out every 5 ms, with the MMU
# invariant checker on; --stats shows where the time went.
DEMO_GUEST := guest/build/memhot.elf
DEMO_FLAGS := --memory 64M --host-memory 16M --vcpus 2 --pageout-interval 5 --check --stats
# Output files of the demo: the JSON report, the trace and the plots, under out/.
DEMO_OUTPUTS := --report out/report.json --trace out/trace.json --plot out
run: all
	mkdir -p out
	bin/toyvmm run $(DEMO_GUEST) $(DEMO_FLAGS) $(DEMO_OUTPUTS)
	@echo
	@echo "out/report.json   the figures above as JSON (fields: README, Reports, traces and plots)"
	@echo "out/trace.json    the timeline: open it at https://ui.perfetto.dev (Open trace file)"
	@echo "out/latency.png   fault and invalidation latency percentiles; out/timeline.png: what happened when"

# Long stress tests carry [Trait("Category","Long")]; `make test` runs them too,
# `make test-long` runs only them.
test: all
	$(DOTNET) test ToyVmm.sln -c $(CONFIG) --no-build -nologo $(TEST_GUARD)

test-long: all
	$(DOTNET) test ToyVmm.sln -c $(CONFIG) --no-build -nologo $(TEST_GUARD) --filter Category=Long

# Scenarios (the cpusuite guests natively, under qemu-user, interpreted and tiered on flat memory,
# EPT and EPT under pressure, in one table; memory guests under pressure), per-operation invalidation
# latency (after tick-stall, the machine's own answer time between its CPUs), per-fault secondary
# fault latency, page-out and reclaim with 2 vCPUs running, the idle background reclaimer's
# share of a busy machine (none), then the BenchmarkDotNet
# micro-benchmarks with short jobs. BENCH_FILTER narrows the last part.
BENCH_FILTER ?= *
bench: all bench-qemu tick-stall
	$(DOTNET) run --project bench/ToyVmm.Bench.csproj -c $(CONFIG) --no-build -- scenario
	DOTNET_TieredCompilation=0 $(DOTNET) run --project bench/ToyVmm.Bench.csproj -c $(CONFIG) --no-build -- invalidate-latency
	DOTNET_TieredCompilation=0 $(DOTNET) run --project bench/ToyVmm.Bench.csproj -c $(CONFIG) --no-build -- secondary-fault-latency
	$(DOTNET) run --project bench/ToyVmm.Bench.csproj -c $(CONFIG) --no-build -- reclaim-under-guest
	$(DOTNET) run --project bench/ToyVmm.Bench.csproj -c $(CONFIG) --no-build -- reclaimer-idle
	cd bench && $(DOTNET) run --project ToyVmm.Bench.csproj -c $(CONFIG) --no-build -- --filter '$(BENCH_FILTER)' --job short

# How long one CPU takes to answer a word another writes, by when the writer starts (at the
# scheduler's tick, or woken by its own timer): the machine's floor under the one-page
# invalidation's figures, with no ToyVmm code in it (bench/machine/tick-stall.c).
tick-stall: out/tick-stall
	out/tick-stall

out/tick-stall: bench/machine/tick-stall.c
	@mkdir -p out
	$(CC) -O2 -Wall -Wextra -Werror -pthread -o $@ $<

# qemu-user is the translator yardstick of `scenario`'s cpusuite table (the cpusuite guests' native twins under
# qemu-x86_64): installed with apt-get when missing; when it cannot be, the scenario leaves that
# column out and prints a line saying so.
bench-qemu:
	@command -v qemu-x86_64 >/dev/null 2>&1 || { \
	  echo "bench: qemu-x86_64 not found, installing the qemu-user package"; \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -q qemu-user >/dev/null 2>&1 \
	    || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q qemu-user >/dev/null 2>&1; }; } \
	  && echo "bench: qemu-user installed" \
	  || echo "bench: qemu-user could not be installed (no apt-get, not root or no package source): the qemu-user column is skipped"; }

# Every shipped guest at 1, 2 and 4 vCPUs under every MMU and notifier mode that
# must be safe, host pool a quarter of RAM, reclaim, forced page-outs and the
# checker on, round after round for SOAK_SECONDS; fails on any failed run or
# checker violation (bench/Soak/SoakLoop.cs). SOAK_GUESTS narrows it to some guests.
SOAK_SECONDS ?= 300
SOAK_GUESTS ?=
soak: all
	$(DOTNET) run --project bench/ToyVmm.Bench.csproj -c $(CONFIG) --no-build -- soak $(SOAK_SECONDS) $(SOAK_GUESTS)

# Coverage-guided fuzzing: AFL++ drives each target of the fuzz harness
# (tests/ToyVmm.Fuzz, SharpFuzz-instrumented copies of the VMM's assemblies) for
# FUZZ_SECONDS each, from the seed corpus tests/fuzz/corpus/TARGET; installs AFL++
# and the instrumenter when missing, fails on any crash (tests/fuzz/fuzz.sh).
# FUZZ_TARGETS narrows it to some targets (elf interpreter hypercall cli).
FUZZ_SECONDS ?= 300
FUZZ_TARGETS ?=
fuzz: all
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_TARGETS='$(FUZZ_TARGETS)' CONFIG=$(CONFIG) DOTNET=$(DOTNET) tests/fuzz/fuzz.sh

clean:
	$(MAKE) -C guest clean
	rm -rf bin out */bin */obj tests/*/bin tests/*/obj
