#!/usr/bin/env bash
# The four --notifier-protocol values on the same guest with the same options
# (README "Notifier protocols", bench/RESULTS.md "Notifier protocols: what the
# notifiers prevent"). For each mode: RUNS runs without the checker (guest data
# intact? host reclaimed? zero-fill fault p50, invalidation p50, from --report)
# and one run with --check (violations; the VM stops at the first one).
# Prints a Markdown table of medians. Needs bin/toyvmm and the guests (make) and jq.
#   bench/notifierless.sh [RUNS]          default 5
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
GUEST=guest/build/pageout.elf
OPTS=(--memory 16M --seed 1 --quiet)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
us() { awk '{ printf "%.1f µs", $1 / 1000 }'; }

echo "guest: $GUEST ${OPTS[*]}; $RUNS runs per mode; medians"
echo
echo "| mode | guest data intact | host can reclaim (pages freed by the guest's PAGEOUTs) | checker violations (--check) | zero-fill fault p50 | invalidation p50 | pinned frames at the end |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for mode in sequence broken-2008 pin none; do
    : > "$tmp/fault"; : > "$tmp/inv"; : > "$tmp/freed"; : > "$tmp/pinned"
    intact=yes
    for i in $(seq "$RUNS"); do
        status=0
        bin/toyvmm run "$GUEST" "${OPTS[@]}" --notifier-protocol "$mode" --report "$tmp/r.json" > "$tmp/out" 2>/dev/null || status=$?
        if [ "$status" -ne 0 ] || ! grep -q 'pageout: PASS' "$tmp/out"; then intact="no (exit $status: $(grep -m1 -o '[0-9]* of [0-9]* words read back wrong' "$tmp/out" || echo 'guest failed'))"; fi
        jq '.faults.zeroFill.p50Ns' "$tmp/r.json" >> "$tmp/fault"
        jq '.invalidations.p50Ns' "$tmp/r.json" >> "$tmp/inv"
        jq '.host.other.reclaimFreed' "$tmp/r.json" >> "$tmp/freed"
        jq '.host.other.pinnedFrames' "$tmp/r.json" >> "$tmp/pinned"
    done
    status=0
    bin/toyvmm run "$GUEST" "${OPTS[@]}" --notifier-protocol "$mode" --check --report "$tmp/c.json" > /dev/null 2>&1 || status=$?
    violations=$(jq '.checker.violations' "$tmp/c.json")
    [ "$status" -eq 7 ] && violations="$violations (exit 7)"
    freed=$(median < "$tmp/freed")
    reclaim=$([ "$freed" -gt 0 ] && echo "yes ($freed)" || echo "no ($freed; $(jq '.host.other.reclaimBusy' "$tmp/r.json") pinned pages found busy)")
    echo "| $mode | $intact | $reclaim | $violations | $(median < "$tmp/fault" | us) | $(median < "$tmp/inv" | us) | $(median < "$tmp/pinned") |"
done
