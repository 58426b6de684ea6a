#!/usr/bin/env bash
# Cross-builds gqa for aarch64 and armv7 and runs the whole ctest suite under
# qemu-user once per CPU model:
#   aarch64: cortex-a72 (NEON, no fp16 arithmetic), cortex-a76 (NEON + fp16),
#            max with SVE vector length 128, 256 and 512 bits
#   armv7:   cortex-a15 (NEON, qemu-arm)
# Each suite forces every Highway target this CPU supports; the table at the
# end lists them per CPU. Needs toolchains/setup-deps.sh to have run.
set -euo pipefail
cd "$(dirname "$0")/.."
scale="${GQA_QEMU_TEST_SCALE:-0.5}"

build() {  # dir, toolchain
  echo "=== cross build: $1 ($2)"
  cmake -S . -B "$1" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_TOOLCHAIN_FILE="$PWD/$2" -DGQA_TEST_SCALE="$scale" >/dev/null
  cmake --build "$1" -j2
}
build build/aarch64 toolchains/aarch64-linux-gnu.cmake
build build/armv7 toolchains/arm-linux-gnueabihf.cmake

table=""
failed=0
run_cpu() {  # build dir, qemu binary, QEMU_CPU, label
  local dir=$1 qemu=$2 cpu=$3 label=$4
  echo "=== ctest under $qemu -cpu $cpu ($label)"
  local targets
  targets=$(QEMU_CPU="$cpu" "$qemu" "$dir/tests/test_errors" --no-run 2>&1 \
              | sed -n 's/.*Highway targets run on this CPU: //p')
  if QEMU_CPU="$cpu" ctest --test-dir "$dir" -j2 --output-on-failure --timeout 1500; then
    if declare -F count_tests >/dev/null; then count_tests "$dir"; fi
    table+=$(printf '%-34s %-26s %s' "$label" "$targets" "passed")$'\n'
  else
    table+=$(printf '%-34s %-26s %s' "$label" "$targets" "FAILED")$'\n'
    failed=1
  fi
}
run_cpu build/aarch64 qemu-aarch64 cortex-a72 "aarch64 cortex-a72"
run_cpu build/aarch64 qemu-aarch64 cortex-a76 "aarch64 cortex-a76"
run_cpu build/aarch64 qemu-aarch64 max,sve-default-vector-length=16 "aarch64 max SVE 128-bit"
run_cpu build/aarch64 qemu-aarch64 max,sve-default-vector-length=32 "aarch64 max SVE 256-bit"
run_cpu build/aarch64 qemu-aarch64 max,sve-default-vector-length=64 "aarch64 max SVE 512-bit"
run_cpu build/armv7 qemu-arm cortex-a15 "armv7 cortex-a15"

echo
echo "=== Highway targets run per CPU (qemu-user)"
printf '%-34s %-26s %s\n' "CPU" "targets forced in turn" "suite"
printf '%s' "$table"
exit $failed
