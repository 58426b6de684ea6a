// gqa-bench's core and layer records: the table printed per case (with
// the roofs measured in the same run) and their JSON records.
#ifndef GQA_BENCH_BENCH_CORE_REPORT_H_
#define GQA_BENCH_BENCH_CORE_REPORT_H_

#include <stdio.h>

#include <string>
#include <vector>

#include "bench/bench_block_cache.h"
#include "bench/bench_options.h"
#include "bench/bench_steady.h"

namespace gqa {

struct Record {
  Shape shape;
  std::string dtype;
  int threads = 1;
  double median_ms = 0, min_ms = 0, gflops = 0, gbps = 0, peak_gflops = 0,
         peak_gbps = 0, max_abs_err = 0;
  bool pass = true;
  // --softcap / --sinks: the case with the options off, timed rep by rep
  // in alternating order with it; paired_ratio = median of on / off per
  // rep pair (0: no option).
  double off_median_ms = 0, off_min_ms = 0, paired_ratio = 0;
  Steady steady;  // warm-up and throttle figures (bench/bench_steady.h)
};

// The highest fraction of the read bandwidth the FMA peak allows on r's
// shape: (bytes / bw) / (flops / peak) = (gbps / bw) / (gflops / peak),
// both rates taken at the same median time; at most 1.
inline double BwCap(const Record& r) {
  const double cap = (r.gbps / r.peak_gbps) / (r.gflops / r.peak_gflops);
  return cap < 1.0 ? cap : 1.0;
}

// The roofs line, the read bandwidth by load width, then one line per
// record (sets each record's peak_gflops / peak_gbps to the roofs').
void PrintCoreTable(const Options& o, const Roofs& roofs, int probes,
                    bool have_pool, std::vector<Record>* records);
// One JSON object per record, comma-separated after *first.
void WriteCoreJson(FILE* f, const Options& o, const Roofs& roofs,
                   const std::vector<Record>& records, bool* first);

}  // namespace gqa

#endif  // GQA_BENCH_BENCH_CORE_REPORT_H_
