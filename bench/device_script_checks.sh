#!/bin/sh
# ctest: run_board.sh and run_android.sh stop, non-zero and saying why, at
# the first step that needs a device; plot_devices.py --text without it.
#   sh bench/device_script_checks.sh SOURCE_DIR
src=$1
fail=0
check() {  # check PATTERN CMD...: CMD exits non-zero, output has PATTERN
  pattern=$1; shift
  out=$("$@" 2>&1); rc=$?
  if [ $rc -eq 0 ] || ! printf '%s' "$out" | grep -qF -- "$pattern"; then
    echo "FAIL: $* (rc $rc): $out"; fail=1
  else echo "ok: $*: $pattern"; fi
}
# 192.0.2.1 is TEST-NET-1: never routed, so ssh gives up after 2 s.
check "is unreachable over ssh" sh "$src/bench/run_board.sh" --dry-run nobody@192.0.2.1
check "usage: run_board.sh" sh "$src/bench/run_board.sh"
# adb absent: a PATH with only the basic tools.
t=$(mktemp -d)
for tool in sh awk wc cat dirname; do ln -s "$(command -v $tool)" "$t/$tool"; done
check "adb not found" env PATH="$t" sh "$src/bench/run_android.sh"
# A fake adb with no device attached.
printf '#!/bin/sh\necho "List of devices attached"\n' > "$t/adb"; chmod +x "$t/adb"
check "no adb device attached" env PATH="$t" sh "$src/bench/run_android.sh"
# plot_devices.py --text on a two-set record, no matplotlib needed.
cat > "$t/b.json" <<'J'
[
  {"name": "D3", "kind": "core", "median_ms": 0.5, "gflops": 10, "gbps": 5},
  {"kind": "device", "package": "P", "cpus": "0-3", "target": "NEON", "threads": 4, "cores": [{"cpu": 0, "uarch": "Cortex-A55"}]},
  {"name": "D3", "kind": "core", "median_ms": 0.2, "gflops": 25, "gbps": 12},
  {"kind": "device", "package": "P", "cpus": "4-7", "target": "NEON", "platform_kernels": "exact", "threads": 4, "cores": [{"cpu": 4, "uarch": "Cortex-A76"}]}
]
J
out=$(/usr/bin/python3 "$src/bench/plot_devices.py" --text "$t/b.json" 2>&1)
if [ $? -ne 0 ] || ! printf '%s' "$out" | grep -q "cpus 4-7 (Cortex-A76) NEON pk exact x4 *D3 *0.2000 ms" ||
    ! printf '%s' "$out" | grep -q "cpus 0-3 (Cortex-A55) NEON x4 *D3 *0.5000 ms"; then
  echo "FAIL: plot_devices.py --text: $out"; fail=1
else echo "ok: plot_devices.py --text"; fi
rm -rf "$t"
exit $fail
