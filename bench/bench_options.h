// gqa-bench's command line: the case shapes (presets or one custom shape)
// and the options, parsed strictly (every bad option or value named).
#ifndef GQA_BENCH_BENCH_OPTIONS_H_
#define GQA_BENCH_BENCH_OPTIONS_H_

#include <stdint.h>

#include <string>
#include <vector>

namespace gqa {

struct Shape {
  std::string name;
  int64_t batch = 1, q_heads = 8, kv_heads = 2, head_dim = 64, q_len = 512,
          kv_len = 512;
  bool causal = false;
  bool layer = false;    // whole layer (projections too) vs core only
  int64_t features = 0;  // layer: Fq = Fk = Fv
  bool decode = false;   // T new queries at the end of an S-long cache,
                         // always cold; GB/s counts the K+V read
};

struct Options {
  std::vector<Shape> shapes;
  bool f16 = false;
  int threads = 1;
  int reps = 5;
  bool cold = false;
  std::string json;
  // --cache: the decode shapes (the D presets unless others are named)
  // through the v2 block cache in every element type, T = 1 and 4, and the
  // cache-prefill case; --accuracy: q8/q4 errors against the f32 cache.
  bool cache = false;
  bool accuracy = false;
  int64_t block_tokens = 32;  // --block-tokens
  int64_t chunk = 256;        // --chunk: prefill chunk (T of each attend)
  // LLM logit options on the core cases (issue 13's speed goals): --softcap
  // C (C > 0) and --sinks (one sink logit of 0.5 per query head).
  float softcap = 0.0f;
  bool sinks = false;
  // --rope: whole decode steps (append 1 token + attend) of the decode
  // shapes through the block cache with RoPE fused and without.
  bool rope = false;
  // --drafts: 4 drafts verified in one call vs one decode step (block cache).
  bool drafts = false;
};

// The decode presets D1, D2, D3.
std::vector<Shape> DecodePresets();
// The decode shapes o names, or the decode presets where it names none.
std::vector<Shape> DecodeShapesOf(const Options& o);
// "B1 Hq32 Hkv8 D128 T<T> S4096": a decode case's shape, for the tables.
std::string DecodeShapeLabel(const Shape& s, int64_t T);

extern const char kBenchUsage[];

// Fills *o from the command line (every preset when none is named); false
// with *error naming the bad option or value.
bool ParseBenchArgs(int argc, char** argv, Options* o, std::string* error);

}  // namespace gqa

#endif  // GQA_BENCH_BENCH_OPTIONS_H_
