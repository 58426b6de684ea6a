#!/bin/sh
# Regression checks for gqa-conformance and gqa-bench on bad input (issue 10,
# rows 14 and 15): corrupted copies of a golden case fail cleanly with the
# file and byte counts named, and bad options exit 2 naming the option.
#
#   sh bench/tool_checks.sh cases GOLDEN_DIR GQA_CONFORMANCE [EMULATOR...]
#   sh bench/tool_checks.sh cli GQA_CONFORMANCE GQA_BENCH [EMULATOR...]
set -u
mode=$1
shift
fails=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gqa_tool_checks.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

# expect WANT_RC PATTERN CMD...: CMD exits WANT_RC and its output (stdout and
# stderr) contains the fixed string PATTERN.
expect() {
  want_rc=$1
  pattern=$2
  shift 2
  "$@" >"$tmp/out" 2>&1
  rc=$?
  if [ "$rc" -ne "$want_rc" ] || ! grep -qF -- "$pattern" "$tmp/out" ||
    grep -qE "Sanitizer|runtime error:" "$tmp/out"; then
    echo "FAIL: '$*' exited $rc (want $want_rc) or lacks: $pattern"
    sed 's/^/  | /' "$tmp/out"
    fails=$((fails + 1))
  fi
}

if [ "$mode" = cases ]; then
  golden=$1
  conformance=$2
  shift 2
  run() { "$@" "$conformance" "$tmp/cases"; }
  src="$golden/01_mha_self_basic"
  [ -f "$src/case.json" ] || { echo "no $src/case.json"; exit 1; }
  mkdir "$tmp/cases"
  for c in ok t_claims_more short_bin long_bin t_negative t_huge t_string; do
    cp -R "$src" "$tmp/cases/$c"
  done
  chmod -R u+w "$tmp/cases"
  edit() {  # edit CASE SED_EXPR: rewrites CASE/case.json, which must change
    sed "$2" "$tmp/cases/$1/case.json" >"$tmp/j"
    if cmp -s "$tmp/j" "$tmp/cases/$1/case.json"; then
      echo "FAIL: '$2' did not change $1/case.json"
      fails=$((fails + 1))
    fi
    cp "$tmp/j" "$tmp/cases/$1/case.json"
  }
  edit t_claims_more 's/"T": 8,/"T": 16,/'
  edit short_bin 's/"query.bin", "shape": \[2, 8, 16\]/"query.bin", "shape": [2, 16, 16]/'
  cat "$src/value.bin" "$src/value.bin" >"$tmp/cases/long_bin/value.bin"
  edit t_negative 's/"T": 8,/"T": -3,/'
  edit t_huge 's/"T": 8,/"T": 9999999999999,/'
  edit t_string 's/"T": 8,/"T": "8",/'
  c="$tmp/cases"
  expect 1 "1 passed, 6 failed" run "$@"
  expect 1 "t_claims_more/case.json: output: shape [2, 8, 16], but the case's dimensions imply [2, 16, 16]" run "$@"
  expect 1 "$c/short_bin/query.bin: shape [2, 16, 16] needs 2048 bytes, the file has 1024" run "$@"
  expect 1 "$c/long_bin/value.bin: shape [2, 8, 16] needs 1024 bytes, the file has 2048" run "$@"
  expect 1 "shapes.T: -3 is below 1" run "$@"
  expect 1 "shapes.T: not an integer" run "$@"
  expect 1 "t_huge/case.json: shapes.T: 9999999999999 exceeds 16777216" run "$@"
elif [ "$mode" = cli ]; then
  conformance=$1
  bench=$2
  shift 2
  mkdir "$tmp/empty"
  expect 0 "usage: gqa-conformance" "$@" "$conformance" --help
  expect 2 "gqa-conformance: --threads: 'abc' is not an integer" \
    "$@" "$conformance" --threads abc "$tmp/empty"
  expect 2 "gqa-conformance: --threads: '0' is not an integer" \
    "$@" "$conformance" --threads 0 "$tmp/empty"
  expect 2 "gqa-conformance: unknown option '--foo'" \
    "$@" "$conformance" --foo "$tmp/empty"
  expect 2 "gqa-conformance: --dtype: 'f64' is not f32 or f16" \
    "$@" "$conformance" --dtype f64 "$tmp/empty"
  expect 1 "$tmp/missing: no such directory" "$@" "$conformance" "$tmp/missing"
  expect 1 "$tmp/empty: no case found" "$@" "$conformance" "$tmp/empty"
  expect 0 "usage: gqa-bench" "$@" "$bench" --help
  expect 2 "gqa-bench: --threads: 'abc' is not an integer" \
    "$@" "$bench" --threads abc
  expect 2 "gqa-bench: --reps: '3x' is not an integer" "$@" "$bench" --reps 3x
  expect 2 "gqa-bench: unknown option '--foo'" "$@" "$bench" --foo
  expect 2 "gqa-bench: --cpus: '7-4' is not a CPU list" "$@" "$bench" --cpus 7-4
  expect 2 "gqa-bench: --cpus: 'a,b' is not a CPU list" "$@" "$bench" --cpus a,b
  expect 2 "gqa-bench: --cpus: '0,' is not a CPU list" "$@" "$bench" --cpus 0,
  expect 2 "gqa-bench: --cpus needs a value" "$@" "$bench" --cpus
  expect 2 "gqa-bench: --target: 'NOPE' is not a target this CPU supports (supported:" \
    "$@" "$bench" --target NOPE
  expect 2 "gqa-bench: --platform-kernels: 'fast' is not off, exact or on" \
    "$@" "$bench" --platform-kernels fast
  # --help goes to stdout.
  "$@" "$conformance" --help 2>/dev/null | grep -q "usage:" || {
    echo "FAIL: gqa-conformance --help prints nothing on stdout"
    fails=$((fails + 1))
  }
  "$@" "$bench" --help 2>/dev/null | grep -q "usage:" || {
    echo "FAIL: gqa-bench --help prints nothing on stdout"
    fails=$((fails + 1))
  }
else
  echo "usage: tool_checks.sh cases|cli ..."
  exit 2
fi
if [ "$fails" -ne 0 ]; then
  echo "$fails check(s) failed"
  exit 1
fi
echo "all $mode checks passed"
