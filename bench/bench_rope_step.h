// gqa-bench --rope: whole decode steps through the v2 block cache, one new
// token appended and attended, with RoPE fused into both (append_rope, the
// attend's q_rope) and without, interleaved in one run; the ratio is issue
// 13's goal (within 5%), and the fused step's output is checked bit for bit
// against the unfused path (gqa_rope, then the plain calls).
#ifndef GQA_BENCH_BENCH_ROPE_STEP_H_
#define GQA_BENCH_BENCH_ROPE_STEP_H_

#include <pthreadpool.h>
#include <stdio.h>

#include <string>
#include <vector>

#include "bench/bench_options.h"

namespace gqa {

struct RopeStepRecord {
  Shape shape;        // B, Hq, Hkv, D, kv_len = S after the step (T = 1)
  std::string dtype;  // cache element type
  int threads = 1;
  int64_t block_tokens = 0;
  double plain_ms = 0, rope_ms = 0;  // medians of append + attend
  double ratio = 0;                  // rope_ms / plain_ms
  bool checked = false;              // fused == unfused, bit for bit
  bool pass = true;
  std::string error;
};

// The decode shapes of o (the D presets when it names none) in f32, f16
// and q8 caches.
std::vector<RopeStepRecord> BenchRopeSteps(const Options& o,
                                           pthreadpool_t pool);
void PrintRopeStepTable(const std::vector<RopeStepRecord>& records);
void WriteRopeStepJson(FILE* f, const std::vector<RopeStepRecord>& records,
                       bool* first);

}  // namespace gqa

#endif  // GQA_BENCH_BENCH_ROPE_STEP_H_
