#!/bin/sh
# make fuzz: coverage-guided fuzzing of every target of tests/ToyVmm.Fuzz (FuzzTargets.All)
# with AFL++ through SharpFuzz, FUZZ_SECONDS (default 300) each, starting from the seed
# corpus tests/fuzz/corpus/TARGET. Installs what it needs when missing: Debian's afl++
# (as root, with apt-get) and the sharpfuzz instrumenter (.config/dotnet-tools.json).
#
#   out/fuzz/bin                    the harness, with toyvmm.dll and ToyVmm.Mmu.dll instrumented
#   out/fuzz/findings/TARGET        AFL++'s output: queue/ (inputs that found new paths),
#                                   crashes/, hangs/, fuzzer_stats
#
# Every crash is replayed with the uninstrumented harness, which prints the exception; a
# crash fails the run. Turn each into a regression test by copying it into
# tests/fuzz/regressions/TARGET/ (the corpus replay of `make test` runs that folder too)
# and fixing the bug. A "hang" (an input over AFL++'s time limit) that the replay runs to
# its end was only slow on a loaded machine and is reported, not failed.
set -eu
cd "$(dirname "$0")/../.."

seconds=${FUZZ_SECONDS:-300}
config=${CONFIG:-Release}
dotnet=${DOTNET:-dotnet}
out=out/fuzz

if ! command -v afl-fuzz >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "fuzz: installing AFL++ (Debian package afl++)"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq afl++ >/dev/null
    else
        echo "fuzz: afl-fuzz is missing; install AFL++ (Debian: apt-get install afl++) and run again" >&2
        exit 2
    fi
fi
"$dotnet" tool restore >/dev/null

# A fresh copy to instrument: the build outputs the tests use stay untouched.
rm -rf "$out/bin"
"$dotnet" publish tests/ToyVmm.Fuzz/ToyVmm.Fuzz.csproj -c "$config" -nologo -v q -o "$out/bin"
"$dotnet" build tests/ToyVmm.Fuzz/ToyVmm.Fuzz.csproj -c "$config" -nologo -v q >/dev/null
for assembly in toyvmm.dll ToyVmm.Mmu.dll; do
    "$dotnet" sharpfuzz "$out/bin/$assembly" >/dev/null
done
triage="tests/ToyVmm.Fuzz/bin/$config/net10.0/toyvmm-fuzz"
targets=${FUZZ_TARGETS:-$("$triage" --list | cut -d' ' -f1)}

# dotnet is not an AFL-instrumented binary (SharpFuzz speaks the fork-server protocol
# itself); the machine's core_pattern, CPU governor and free cores are not ours to change.
export AFL_SKIP_BIN_CHECK=1 AFL_NO_AFFINITY=1 AFL_SKIP_CPUFREQ=1 AFL_NO_UI=1 \
    AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_FAST_CAL=1
# The interpreter's ept runs create a host and a swap file: give an input 10 s.
timeout_ms=10000

failed=0
summary=""
for t in $targets; do
    echo "fuzz: $t for ${seconds}s"
    rm -rf "$out/findings/$t"
    mkdir -p "$out/findings"
    if ! afl-fuzz -i "tests/fuzz/corpus/$t" -o "$out/findings/$t" -V "$seconds" -t "$timeout_ms" -m none \
            -- "$out/bin/toyvmm-fuzz" "$t" > "$out/findings/$t.log" 2>&1; then
        echo "fuzz: afl-fuzz failed on $t; the end of its log ($out/findings/$t.log):" >&2
        tail -20 "$out/findings/$t.log" >&2
        exit 1
    fi
    stats="$out/findings/$t/default/fuzzer_stats"
    field() { sed -n "s/^$1 *: *//p" "$stats"; }
    crashes=$(find "$out/findings/$t/default/crashes" -name 'id*' -type f | sort)
    hangs=$(find "$out/findings/$t/default/hangs" -name 'id*' -type f | sort)
    line=$(printf '%-12s %10s execs %8s/s  corpus %5s  edges %5s  crashes %s  hangs %s' "$t" \
        "$(field execs_done)" "$(field execs_per_sec)" "$(field corpus_count)" "$(field edges_found)" \
        "$(echo "$crashes" | grep -c . || true)" "$(echo "$hangs" | grep -c . || true)")
    summary="$summary$line\n"
    if [ -n "$crashes" ]; then
        failed=1
        echo "fuzz: $t crashed; replaying each crash:"
        # shellcheck disable=SC2086
        "$triage" "$t" $crashes || true
    fi
    if [ -n "$hangs" ]; then
        echo "fuzz: $t: inputs over ${timeout_ms} ms; replaying them without the fuzzer:"
        # shellcheck disable=SC2086
        "$triage" "$t" $hangs || failed=1
    fi
done
printf '\nfuzz: %s s per target\n%b' "$seconds" "$summary"
if [ "$failed" != 0 ]; then
    echo "fuzz: crashes found: inputs in $out/findings/*/default/crashes (copy each into tests/fuzz/regressions/TARGET/ and fix)" >&2
    exit 1
fi
