#!/usr/bin/env bash
# The whole test suite (README's test command; .ci/run calls it):
#   bash tests/run_all.sh           native Release + ASan/UBSan + ARM under qemu
#   bash tests/run_all.sh --quick   native Release only
# Installs what it needs first (toolchains/setup-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
[ "${1:-}" = "--quick" ] && quick=1
start=$(date +%s)

if [ "$quick" = 1 ]; then
  bash toolchains/setup-deps.sh --native
else
  bash toolchains/setup-deps.sh
fi

# Tests run in all (ctest entries summed over builds and CPUs), for the
# closing line.
export GQA_TESTS_RUN_FILE="$PWD/build/.tests_run"
mkdir -p build && echo 0 > "$GQA_TESTS_RUN_FILE"
count_tests() {  # build dir: adds its ctest entries to the total
  local n
  n=$(ctest --test-dir "$1" -N | sed -n 's/^Total Tests: //p')
  echo $(( $(cat "$GQA_TESTS_RUN_FILE") + n )) > "$GQA_TESTS_RUN_FILE"
}
export -f count_tests

run_native() {  # name, extra cmake args...
  local dir="build/$1"; shift
  echo "=== native build: $dir ($*)"
  cmake -S . -B "$dir" -G Ninja "$@" >/dev/null
  cmake --build "$dir" -j2
  ctest --test-dir "$dir" -j2 --output-on-failure --timeout 1500
  count_tests "$dir"
}

run_tsan() {  # ThreadSanitizer: only test_threads (one layer, many threads)
  echo "=== ThreadSanitizer build: build/tsan (test_threads)"
  cmake -S . -B build/tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DGQA_TSAN=ON >/dev/null
  cmake --build build/tsan -j2 --target test_threads
  TSAN_OPTIONS="halt_on_error=1" build/tsan/tests/test_threads
  echo $(( $(cat "$GQA_TESTS_RUN_FILE") + 1 )) > "$GQA_TESTS_RUN_FILE"
}

run_native release -DCMAKE_BUILD_TYPE=Release
if [ "$quick" = 0 ]; then
  run_native asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGQA_SANITIZE=ON
  run_tsan
  # libFuzzer over the C ABI (clang-14, ASan + UBSan): a fixed number of runs.
  bash tests/fuzz/run_fuzz.sh
  bash tests/run_cross.sh
fi
echo "=== all suites passed in $(( $(date +%s) - start )) s"
echo "$(cat "$GQA_TESTS_RUN_FILE") passed, 0 failed"
