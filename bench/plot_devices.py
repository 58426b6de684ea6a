#!/usr/bin/python3
"""Compares gqa-bench --json files across devices, targets and CPU sets.

Each file is an array of case records, each CPU set's cases followed by its
"device" record (package, cpus, target, cores). --text prints the table
(no matplotlib needed); otherwise one bar chart of median ms per case, one
bar per (file, CPU set, target), is written to --out.
  plot_devices.py [--text] [--out devices.png] bench.json [more.json ...]
"""
import json
import sys


def load(paths):
    """Rows (label, case name, median_ms, gflops, gbps) from the files."""
    rows = []
    for path in paths:
        with open(path) as f:
            records = json.load(f)
        pending = []
        for r in records:
            if r.get("kind") == "device":
                uarchs = sorted({c["uarch"] for c in r.get("cores", [])})
                label = (f"{path}: {r.get('package', '?')} cpus "
                         f"{r.get('cpus') or 'all'} ({'/'.join(uarchs)}) "
                         f"{r.get('target', '?')} "
                         + (f"pk {r['platform_kernels']} "
                            if "platform_kernels" in r else "")
                         + f"x{r.get('threads', '?')}")
                rows += [(label,) + p for p in pending]
                pending = []
            elif "median_ms" in r:
                pending.append((r["name"], r["median_ms"], r.get("gflops", 0),
                                r.get("gbps", 0)))
        # Records from before the device record existed.
        rows += [(f"{path}: unknown device",) + p for p in pending]
    return rows


def main(argv):
    text = "--text" in argv
    out = "devices.png"
    args = [a for a in argv if a != "--text"]
    if "--out" in args:
        i = args.index("--out")
        if i + 1 >= len(args):
            sys.exit("plot_devices.py: --out needs a file name")
        out = args[i + 1]
        del args[i:i + 2]
    if not args:
        sys.exit(__doc__)
    rows = load(args)
    if not rows:
        sys.exit("plot_devices.py: no case records in " + ", ".join(args))
    if text:
        for label, name, ms, gflops, gbps in rows:
            print(f"{label:70s} {name:12s} {ms:10.4f} ms {gflops:9.2f} "
                  f"GFLOP/s {gbps:8.2f} GB/s")
        return
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("plot_devices.py: matplotlib is missing (apt-get install "
                 "python3-matplotlib), or use --text")
    labels = list(dict.fromkeys(r[0] for r in rows))
    cases = list(dict.fromkeys(r[1] for r in rows))
    width = 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=(max(6, 1.5 * len(cases)), 4.5))
    for k, label in enumerate(labels):
        ms = {r[1]: r[2] for r in rows if r[0] == label}
        xs = [i + k * width for i, c in enumerate(cases) if c in ms]
        ax.bar(xs, [ms[c] for c in cases if c in ms], width, label=label)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(cases))])
    ax.set_xticklabels(cases)
    ax.set_ylabel("median ms (lower is better)")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print("wrote", out)


if __name__ == "__main__":
    main(sys.argv[1:])
