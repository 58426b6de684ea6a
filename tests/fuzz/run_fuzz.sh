#!/usr/bin/env bash
# Builds (tests/fuzz/build.sh) and runs the libFuzzer target over the gqa C
# ABI from the seed corpus tests/fuzz/corpus (make_corpus.py writes it):
#   bash tests/fuzz/run_fuzz.sh                 CI: a fixed number of runs
#                                               (~3 min on 2 cores), one job,
#                                               at most FUZZ_CI_SECONDS (180)
#   bash tests/fuzz/run_fuzz.sh --long SECONDS  run for SECONDS instead
# Environment: FUZZ_RUNS (CI runs, default 300000), FUZZ_CI_SECONDS (CI
# time cap, default 180: the KV cache v2 family runs slower, the step keeps
# its ~3 min), GQA_FUZZ_STRICT=1 (also compare values when inputs hold
# NaN/Inf). New corpus units go to
# build/fuzz/corpus_work, crashing inputs to build/fuzz/artifacts/; replay
# one with build/fuzz/fuzz_c_abi FILE. Prints one summary line and exits
# non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")/../.."
limit=(-runs="${FUZZ_RUNS:-300000}" -max_total_time="${FUZZ_CI_SECONDS:-180}")
if [ "${1:-}" = "--long" ]; then
  limit=(-max_total_time="${2:?--long SECONDS}")
fi
bash tests/fuzz/build.sh
out=build/fuzz
mkdir -p "$out/corpus_work" "$out/artifacts"
log="$out/fuzz.log"
start=$(date +%s)
rc=0
"$out/fuzz_c_abi" "${limit[@]}" -timeout=30 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$out/artifacts/" \
  "$out/corpus_work" tests/fuzz/corpus >"$log" 2>&1 || rc=$?
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
# (no cov line when a seed crashes at once: pipefail must not end the script)
cov=$({ grep -o 'cov: [0-9]*' "$log" || true; } | tail -1 | cut -d' ' -f2)
secs=$(( $(date +%s) - start ))
findings=$(grep -c 'FUZZ FINDING\|ERROR: AddressSanitizer\|runtime error\|ERROR: libFuzzer' "$log" || true)
[ "$rc" != 0 ] && [ "$findings" = 0 ] && findings=1
echo "fuzz: ${runs:-0} executions in ${secs} s ($(( ${runs:-0} / (secs > 0 ? secs : 1) ))/s), cov: ${cov:-?}, findings: $findings (log: $log)"
if [ "$rc" != 0 ]; then
  grep -m5 'FUZZ FINDING\|ERROR:\|runtime error\|Test unit written' "$log" || true
  exit 1
fi
