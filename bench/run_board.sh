#!/bin/sh
# The on-device loop for an aarch64 Linux board over ssh: check the host,
# cross build (toolchains/aarch64-linux-gnu.cmake), copy gqa-conformance,
# gqa-bench and the golden cases, run the conformance suite, then gqa-bench
# once per CPU cluster (CPUs grouped by cpuinfo_max_freq), fetch the JSON
# and plot it. Stops, non-zero and saying why, at the first step that fails.
#   sh bench/run_board.sh [--dry-run] USER@HOST [gqa-bench options...]
set -u
dry=0
if [ "${1:-}" = --dry-run ]; then dry=1; shift; fi
host=${1:-}
[ -n "$host" ] || { echo "usage: run_board.sh [--dry-run] USER@HOST [bench options]" >&2; exit 2; }
shift
src=$(cd "$(dirname "$0")/.." && pwd)
golden=${GQA_GOLDEN:-$src/../shared/golden}  # the conformance cases
ssh_opts="-o ConnectTimeout=2 -o BatchMode=yes"
# 1. The host first: nothing is built for a board that cannot be reached.
if ! ssh $ssh_opts "$host" true 2>/dev/null; then
  echo "run_board.sh: $host is unreachable over ssh (BatchMode, 2 s timeout): stopping before the build" >&2
  exit 3
fi
[ $dry = 1 ] && { echo "run_board.sh: $host reachable (dry run: nothing built)"; exit 0; }
# 2. Cross build.
b="$src/build/aarch64"
cmake -S "$src" -B "$b" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE="$src/toolchains/aarch64-linux-gnu.cmake" >/dev/null || exit 4
ninja -C "$b" -j2 gqa-bench gqa-conformance || exit 4
# 3. Copy and run.
r=/tmp/gqa-run
ssh $ssh_opts "$host" "mkdir -p $r" || exit 5
# XNNPACK and pthreadpool from the private sysroot (Multi-Arch: no); the
# board needs libhwy1 and libcpuinfo0 installed, or copy those too.
x=$(sed -n 's/^GQA_XDEPS_SYSROOT:PATH=//p' "$b/CMakeCache.txt")/usr/lib/aarch64-linux-gnu
scp -q -r "$b/gqa-bench" "$b/gqa-conformance" "$x"/libXNNPACK.so.0 \
  "$x"/libpthreadpool.so.0 "$host:$r/" &&
  scp -q -r "$golden" "$host:$r/golden" || exit 5
ssh $ssh_opts "$host" "cd $r && LD_LIBRARY_PATH=$r ./gqa-conformance golden" || exit 6
# CPU clusters: CPUs that share a cpuinfo_max_freq.
cpus=$(ssh $ssh_opts "$host" 'for f in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/cpuinfo_max_freq; do [ -r "$f" ] || continue; c=${f#/sys/devices/system/cpu/cpu}; echo "$(cat $f) ${c%%/*}"; done' |
  sort -n | awk '{ if ($1 != f) { if (s != "") printf "--cpus %s ", s; s = $2; f = $1 } else s = s "," $2 } END { if (s != "") printf "--cpus %s", s }')
[ -n "$cpus" ] || cpus="--cpus 0"
echo "run_board.sh: clusters: $cpus"
ssh $ssh_opts "$host" "cd $r && LD_LIBRARY_PATH=$r ./gqa-bench $cpus --json bench.json $*" || exit 7
scp -q "$host:$r/bench.json" "bench-$(echo "$host" | tr -c 'A-Za-z0-9.\n' _).json" || exit 7
/usr/bin/python3 "$src/bench/plot_devices.py" --out board.png bench-*.json || exit 8
