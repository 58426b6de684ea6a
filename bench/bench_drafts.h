// gqa-bench --drafts: speculative decoding's verification step through the
// v2 block cache. T = 4 drafts appended and attended in one call with a
// chain tree mask, then the rejected ones truncated (2 of 4 kept), against
// one plain decode step (append 1 + attend), interleaved in one run, each
// on a cold copy of the cache: verify_ms / step_ms is what a verification
// costs in decode steps. The drafts' outputs are checked against the same
// 4 tokens decoded one step at a time.
#ifndef GQA_BENCH_BENCH_DRAFTS_H_
#define GQA_BENCH_BENCH_DRAFTS_H_

#include <pthreadpool.h>
#include <stdio.h>

#include <string>
#include <vector>

#include "bench/bench_options.h"

namespace gqa {

struct DraftsRecord {
  Shape shape;        // B, Hq, Hkv, D, kv_len = S with the drafts appended
  std::string dtype;  // cache element type
  int64_t drafts = 4;
  int threads = 1;
  int64_t block_tokens = 0;
  double verify_ms = 0, step_ms = 0;  // medians
  double steps = 0;                   // verify_ms / step_ms
  double max_diff = 0;                // |verify out - one-by-one out|
  bool checked = false;
  bool pass = true;
  std::string error;
};

// The decode shapes of o (the D presets when it names none) in f32, f16
// and q8 caches.
std::vector<DraftsRecord> BenchDrafts(const Options& o, pthreadpool_t pool);
void PrintDraftsTable(const std::vector<DraftsRecord>& records);
void WriteDraftsJson(FILE* f, const std::vector<DraftsRecord>& records,
                     bool* first);

}  // namespace gqa

#endif  // GQA_BENCH_BENCH_DRAFTS_H_
