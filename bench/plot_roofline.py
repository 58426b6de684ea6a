#!/usr/bin/python3
"""Roofline plot of gqa-bench results.

usage: bench/plot_roofline.py bench.json [more.json ...] -o roofline.png

Each record (gqa-bench --json) is a point at its arithmetic intensity
(GFLOP/s divided by GB/s = flops per byte of minimal traffic) and its
GFLOP/s; the roofs are the FMA peak and the read bandwidth the bench
measured in the same run (the best load width; the widths measured are in
each record's read_bw_bits / read_bw_gbps). Records without a time (an
accuracy record, a case that failed) are not points. Needs Debian's
python3-matplotlib.
"""
import argparse
import json
import sys


def points(records):
    """(label, intensity, GFLOP/s) of every timed record."""
    out = []
    for r in records:
        if r.get("kind") == "accuracy" or r.get("gflops", 0) <= 0:
            continue
        ai = r["gflops"] / r["gbps"] if r.get("gbps", 0) > 0 else 1e4
        dtype = r["dtype"] + ("+rot" if r.get("rotate") else "")
        shape = f' T{r["q_len"]}' if r.get("kind") == "cache" else ""
        if r.get("prefill"):
            shape = f' C{r["chunk"]}'
        out.append((f'{r["name"]}{shape} {dtype} {r["threads"]}t', ai,
                    r["gflops"]))
    return out


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
    pts = points(records)
    if not pts:
        sys.exit("no timed records")
    timed = [r for r in records if "peak_gflops" in r]
    peak = max(r["peak_gflops"] for r in timed)
    bw = max(r["peak_gbps"] for r in timed)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("plot_roofline.py needs matplotlib: apt-get install python3-matplotlib")
    fig, ax = plt.subplots(figsize=(8, 5.5))
    xs = [0.05, peak / bw, 1e4]
    ax.plot(xs, [min(peak, x * bw) for x in xs], "k-", lw=2,
            label=f"roof: {peak:.0f} GFLOP/s, {bw:.1f} GB/s (measured)")
    for label, ai, gflops in pts:
        ax.scatter([ai], [gflops], s=40)
        ax.annotate(label, (ai, gflops), textcoords="offset points",
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
    print(f"wrote {args.output} ({len(pts)} points)")


if __name__ == "__main__":
    main()
