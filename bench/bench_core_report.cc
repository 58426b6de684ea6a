// gqa-bench's core and layer records (see bench_core_report.h).
#include "bench/bench_core_report.h"

#include <string.h>

namespace gqa {

void PrintCoreTable(const Options& o, const Roofs& roofs, int probes,
                    bool have_pool, std::vector<Record>* records) {
  const double peak = roofs.peak_gflops, bw = roofs.bw.best_gbps;
  printf(
      "measured here (best of %d probes, before and after each case): FMA "
      "peak %.1f GFLOP/s, read bandwidth %.1f GB/s (%d-bit loads, %d "
      "thread(s))\n",
      probes, peak, bw, roofs.bw.best_bits, o.threads);
  for (const ReadBandwidth* b : {&roofs.bw_1t, &roofs.bw}) {
    if (b == &roofs.bw && !have_pool) break;
    printf("  read bandwidth, %d thread(s), by load width:",
           b == &roofs.bw ? o.threads : 1);
    for (int w = 0; w < b->num_widths; ++w)
      printf(" %d-bit %.1f GB/s%s", b->bits[w], b->gbps[w],
             w + 1 < b->num_widths ? "," : "\n");
  }
  // %bwcap: the highest %bw the FMA peak allows on this shape (its flops at
  // peak take longer than its bytes at full bandwidth where it is < 100%).
  printf("%-6s %-34s %9s %9s %8s %6s %7s %6s %6s %9s %s\n", "case", "shape",
         "median_ms", "min_ms", "GFLOP/s", "%peak", "GB/s", "%bw", "%bwcap",
         "max_err", "check");
  for (Record& r : *records) {
    const Shape& s = r.shape;
    r.peak_gflops = peak;
    r.peak_gbps = bw;
    char shape[64];
    snprintf(shape, sizeof(shape), "%sB%lld Hq%lld Hkv%lld D%lld T%lld S%lld%s",
             s.layer ? "layer " : "", (long long)s.batch, (long long)s.q_heads,
             (long long)s.kv_heads, (long long)s.head_dim, (long long)s.q_len,
             (long long)s.kv_len, s.causal ? " causal" : "");
    // The cache-prefill baseline runs in f16 whatever --dtype says.
    if (r.dtype != (o.f16 ? "f16" : "f32"))
      snprintf(shape + strlen(shape), sizeof(shape) - strlen(shape), " %s",
               r.dtype.c_str());
    printf(
        "%-6s %-34s %9.3f %9.3f %8.2f %5.1f%% %7.2f %5.1f%% %5.1f%% %9.2e %s\n",
        s.name.c_str(), shape, r.median_ms, r.min_ms, r.gflops,
        100 * r.gflops / peak, r.gbps, 100 * r.gbps / bw, 100 * BwCap(r),
        r.max_abs_err, r.pass ? "ok" : "FAIL");
    PrintSteady(r.steady);
    if (r.paired_ratio > 0) {
      printf(
          "       options off (interleaved): median %.3f min %.3f ms; "
          "on/off %.3fx (median of %d pairs), medians %.3fx, mins %.3fx\n",
          r.off_median_ms, r.off_min_ms, r.paired_ratio, o.reps,
          r.median_ms / r.off_median_ms, r.min_ms / r.off_min_ms);
    }
  }
}

void WriteCoreJson(FILE* f, const Options& o, const Roofs& roofs,
                   const std::vector<Record>& records, bool* first) {
  const std::string bw_json = ReadBandwidthJson(roofs);
  for (size_t i = 0; i < records.size(); ++i) {
    const Record& r = records[i];
    fprintf(
        f,
        "%s  {\"name\": \"%s\", \"kind\": \"%s\", \"batch\": %lld, "
        "\"q_heads\": %lld, "
        "\"kv_heads\": %lld, \"head_dim\": %lld, \"q_len\": %lld, "
        "\"kv_len\": %lld, "
        "\"causal\": %s, \"dtype\": \"%s\", \"threads\": %d, \"cold\": %s, "
        "\"decode\": %s, \"median_ms\": %.6f, \"min_ms\": %.6f, \"gflops\": "
        "%.4f, \"gbps\": %.4f, "
        "\"peak_gflops\": %.4f, \"peak_gbps\": %.4f, \"bw_cap\": %.4f, "
        "\"max_abs_err\": %.3e, "
        "\"pass\": %s%s, \"warmup_reps\": %d, \"warmup_s\": %.4f, "
        "\"warmup_steady\": %s, \"first_ms\": %.6f, \"last_ms\": %.6f, "
        "\"spread\": %.4f, \"throttling\": %s, \"options_off_median_ms\": "
        "%.6f, \"options_off_min_ms\": %.6f, \"options_paired_ratio\": %.4f}",
        *first ? "" : ",\n", r.shape.name.c_str(),
        r.shape.layer ? "layer" : "core", (long long)r.shape.batch,
        (long long)r.shape.q_heads, (long long)r.shape.kv_heads,
        (long long)r.shape.head_dim, (long long)r.shape.q_len,
        (long long)r.shape.kv_len, r.shape.causal ? "true" : "false",
        r.dtype.c_str(), r.threads,
        (o.cold || r.shape.decode) ? "true" : "false",
        r.shape.decode ? "true" : "false", r.median_ms, r.min_ms, r.gflops,
        r.gbps, r.peak_gflops, r.peak_gbps, BwCap(r), r.max_abs_err,
        r.pass ? "true" : "false", bw_json.c_str(), r.steady.warmup_reps,
        r.steady.warmup_s, r.steady.warmup_steady ? "true" : "false",
        r.steady.first_ms, r.steady.last_ms, r.steady.spread,
        r.steady.throttling ? "true" : "false", r.off_median_ms, r.off_min_ms,
        r.paired_ratio);
    *first = false;
  }
}

}  // namespace gqa
