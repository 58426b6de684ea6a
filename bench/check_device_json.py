#!/usr/bin/python3
"""Checks a gqa-bench --json record made with --cpus/--target (ctest)."""
import json
import sys

want_cpus, want_target, path = sys.argv[1], sys.argv[2], sys.argv[3]
records = json.load(open(path))
dev = [r for r in records if r.get("kind") == "device"]
cases = [r for r in records if r.get("kind") != "device"]
assert len(dev) == 1, f"{path}: want one device record, got {len(dev)}"
d = dev[0]
for key in ("package", "kernel", "cpus", "target", "platform_kernels",
            "f16_fml", "threads", "cores"):
    assert key in d, f"{path}: device record lacks {key}"
assert d["cpus"] == want_cpus, d["cpus"]
assert d["target"] == want_target, d["target"]
assert d["threads"] == 1, d["threads"]
assert d["platform_kernels"] in ("off", "exact", "on"), d["platform_kernels"]
assert d["cores"] and all(
    {"cpu", "uarch", "max_freq", "cur_freq"} <= set(c) for c in d["cores"])
assert cases and all(c["pass"] and c["median_ms"] > 0 for c in cases)
for c in cases:
    for key in ("warmup_reps", "warmup_s", "warmup_steady", "first_ms",
                "last_ms", "spread", "throttling"):
        assert key in c, f"{path}: case {c['name']} lacks {key}"
    assert c["warmup_reps"] >= 1 and c["first_ms"] > 0 and c["spread"] >= 0
print(f"ok: {len(cases)} case(s), device {d['package']!r}, "
      f"cores {[c['uarch'] for c in d['cores']]}, target {d['target']}")
