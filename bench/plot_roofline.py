#!/usr/bin/python3
"""Roofline plot of gqa-bench results.

usage: bench/plot_roofline.py bench.json [more.json ...] -o roofline.png

Each record (gqa-bench --json) is a point at its arithmetic intensity
(GFLOP/s divided by GB/s = flops per byte of minimal traffic) and its
GFLOP/s; the roofs are the FMA peak and the read bandwidth the bench
measured in the same run. Needs Debian's python3-matplotlib.
"""
import argparse
import json
import sys

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    sys.exit("plot_roofline.py needs matplotlib: apt-get install python3-matplotlib")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", nargs="+")
    ap.add_argument("-o", "--output", default="roofline.png")
    args = ap.parse_args()
    records = []
    for path in args.json:
        with open(path) as f:
            records.extend(json.load(f))
    if not records:
        sys.exit("no records")
    peak = max(r["peak_gflops"] for r in records)
    bw = max(r["peak_gbps"] for r in records)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    xs = [0.05, peak / bw, 1e4]
    ax.plot(xs, [min(peak, x * bw) for x in xs], "k-", lw=2,
            label=f"roof: {peak:.0f} GFLOP/s, {bw:.1f} GB/s (measured)")
    for r in records:
        ai = r["gflops"] / r["gbps"] if r["gbps"] > 0 else 1e4
        label = f'{r["name"]} {r["dtype"]} {r["threads"]}t'
        ax.scatter([ai], [r["gflops"]], s=40)
        ax.annotate(label, (ai, r["gflops"]), textcoords="offset points",
                    xytext=(5, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (flop / byte of minimal traffic)")
    ax.set_ylabel("GFLOP/s")
    ax.set_title("gqa-bench roofline")
    ax.grid(True, which="both", ls=":", alpha=0.5)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(args.output, dpi=120)
    print(f"wrote {args.output} ({len(records)} points)")


if __name__ == "__main__":
    main()
