#!/bin/sh
# The on-device loop for an Android phone over adb: check adb, a device and
# ANDROID_NDK, build with toolchains/android-arm64.cmake, push gqa-bench,
# gqa-conformance (and the libraries they need) and the golden cases, run
# the conformance suite, then gqa-bench once per CPU cluster (CPUs grouped
# by cpuinfo_max_freq: little, big, prime), pull the JSON and plot it.
# Stops, non-zero and saying why, at the first step that fails.
#   ANDROID_NDK=/path sh bench/run_android.sh [gqa-bench options...]
set -u
src=$(cd "$(dirname "$0")/.." && pwd)
golden=${GQA_GOLDEN:-$src/../shared/golden}  # the conformance cases
command -v adb >/dev/null 2>&1 || { echo "run_android.sh: adb not found on PATH (install android-tools-adb)" >&2; exit 3; }
[ "$(adb devices 2>/dev/null | awk 'NR > 1 && $2 == "device"' | wc -l)" -ge 1 ] ||
  { echo "run_android.sh: no adb device attached (adb devices lists none)" >&2; exit 3; }
[ -n "${ANDROID_NDK:-}" ] && [ -d "$ANDROID_NDK" ] ||
  { echo "run_android.sh: ANDROID_NDK is not set to an NDK folder" >&2; exit 4; }
b="$src/build/android-arm64"
cmake -S "$src" -B "$b" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE="$src/toolchains/android-arm64.cmake" >/dev/null || exit 4
ninja -C "$b" -j2 gqa-bench gqa-conformance || exit 4
r=/data/local/tmp/gqa
adb shell "mkdir -p $r" && adb push "$b/gqa-bench" "$b/gqa-conformance" "$r/" >/dev/null &&
  adb push "$golden" "$r/golden" >/dev/null || exit 5
for so in "$b"/*.so; do [ -e "$so" ] && adb push "$so" "$r/" >/dev/null; done
adb shell "cd $r && LD_LIBRARY_PATH=$r ./gqa-conformance golden" || exit 6
cpus=$(adb shell 'for f in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/cpuinfo_max_freq; do c=${f#/sys/devices/system/cpu/cpu}; echo "$(cat $f) ${c%%/*}"; done' | tr -d '\r' |
  sort -n | awk '{ if ($1 != f) { if (s != "") printf "--cpus %s ", s; s = $2; f = $1 } else s = s "," $2 } END { if (s != "") printf "--cpus %s", s }')
[ -n "$cpus" ] || cpus="--cpus 0"
echo "run_android.sh: clusters: $cpus"
adb shell "cd $r && LD_LIBRARY_PATH=$r ./gqa-bench $cpus --json bench.json $*" || exit 7
adb pull "$r/bench.json" bench-android.json >/dev/null || exit 7
/usr/bin/python3 "$src/bench/plot_devices.py" --out android.png bench-android.json || exit 8
