// Golden cases of the LLM format (shared/spec/llm-attention-semantics.md
// section 6, shared/golden-llm/): loading any case folder of the three kinds
// (attention, kv, rope) with strict size checks, running `kv` cases through
// the public KV cache v2 API (include/gqa/block_cache.h), `attention`
// cases through the attention core (include/gqa/attention.h) and `rope`
// cases through the RoPE helper (include/gqa/rope.h).
#ifndef GQA_BENCH_GOLDEN_LLM_H_
#define GQA_BENCH_GOLDEN_LLM_H_

#include <stdint.h>

#include <map>
#include <string>
#include <vector>

namespace gqa {

// One array of a case: {file, shape, dtype} read in full. Exactly the vector
// of its dtype is filled ("float32" -> f32, "int64" -> i64, "uint8" -> u8).
struct LlmArray {
  std::string dtype;
  std::vector<int64_t> shape;  // dims may be 0 (an empty list of indices)
  std::vector<float> f32;
  std::vector<int64_t> i64;
  std::vector<uint8_t> u8;
};

struct LlmTolerance {
  double atol = 0.0, rtol = 0.0;
};

// A step of a kv case, in order. Fields not used by its op keep defaults.
struct LlmKvStep {
  std::string op;  // append, attend, truncate, keep, read
  bool expect_error = false;
  std::string error;                   // the reference's message
  std::vector<int64_t> lengths_after;  // [B]
  LlmTolerance tolerance;              // the step's, else the case's
  std::map<std::string, LlmArray> files;
  // append: k [B,n,Hkv,D], v [B,n,Hkv,Dv], counts int64 [B].
  int64_t n = 0;
  std::string src_dtype = "f32";  // f32 | f16
  // attend: q [B,T,Hq,D], out [B,T,Hq,Dv]; optional sinks, alibi, tree.
  int64_t T = 0, Hq = 0;
  double scale = 0.0, softcap = 0.0;
  int64_t window = 0;
  std::string policy = "zero", q_dtype = "f32";
  std::vector<std::string> other_options;  // option keys not listed above
  // keep (batch, T, indices) / read (batch, position, head; k_row, v_row).
  int64_t batch = 0, position = 0, head = 0;

  const LlmArray* Find(const std::string& role) const {
    auto it = files.find(role);
    return it == files.end() ? nullptr : &it->second;
  }
};

struct LlmKvCacheSpec {
  int64_t B = 0, Hkv = 0, D = 0, Dv = 0, capacity = 0;
  bool ring = false, rotate = false;
  std::string dtype;  // f32 | f16 | q8 | q4
  bool expect_error = false;
  std::string error;
};

struct LlmCase {
  std::string name, dir, kind, description;  // kind: attention | kv | rope
  LlmTolerance tolerance;
  // attention / rope: shapes, numeric and string options, files.
  std::map<std::string, int64_t> shapes;
  std::map<std::string, double> numeric_options;
  std::map<std::string, std::string> string_options;
  std::map<std::string, LlmArray> files;
  // kv
  LlmKvCacheSpec cache;
  std::vector<LlmKvStep> steps;
};

// The "kind" of dir/case.json when it is a string (the LLM format); empty
// when the file is missing, not JSON, or has no kind (e.g. shared/golden).
std::string LlmCaseKind(const std::string& dir);

// Reads dir/case.json and every array it names. False with *error on any
// malformed field, an unknown kind, dtype or op, a .bin whose byte size is
// not its shape's product times the element size (both counts named), or a
// kv array whose shape disagrees with the cache and the step. A case that
// loads can be run without reading past any array.
bool LoadLlmCase(const std::string& dir, LlmCase* out, std::string* error);

// Why the KV cache v2 API cannot run a kv case (truncate/keep steps, a tree
// mask, unknown inputs or options), or "" when it can.
std::string LlmKvUnsupportedReason(const LlmCase& c);

enum class LlmOutcome { kPassed, kFailed, kSkipped };

struct LlmResult {
  LlmOutcome outcome = LlmOutcome::kFailed;
  std::string message;       // why it failed / was skipped, or a summary
  double max_abs_err = 0.0;  // over the attend outputs
};

// Runs a kv case through gqa_block_cache_*: a pool of B * table_columns
// blocks (64-byte aligned) under a reversed block table, every step checked
// (attend outputs to the step's tolerance with NaN == NaN, read-back rows
// bit for bit, lengths after every step; an expect_error step must fail and
// leave the lengths and the pool bytes unchanged). block_tokens in
// [1, 4096]; threads >= 1 (a pthreadpool of that many threads). With
// attend_outputs, the output of every attend that succeeded is appended
// there (for determinism checks across thread counts).
LlmResult RunKvCase(const LlmCase& c, int64_t block_tokens, int threads,
                    std::vector<std::vector<float>>* attend_outputs = nullptr);

// Why the attention core cannot run an attention case (an unknown input),
// or "" when it can.
std::string LlmAttentionUnsupportedReason(const LlmCase& c);

// Runs an attention case through gqa_attention (f32 or f16 q/k/v as the
// case says, out and scores f32) on a pthreadpool of `threads` (>= 1), and
// checks out (and scores) to the case's tolerance with NaN == NaN. A case
// with per-batch `offsets` runs one call per batch. With out_copy, the
// output is copied there (for determinism checks across thread counts).
LlmResult RunAttentionCase(const LlmCase& c, int threads,
                           std::vector<float>* out_copy = nullptr);

// Runs a rope case through gqa_rope, f32 in and out (f16 would not meet the
// cases' 1e-4), once into a poisoned y and once in place on a copy of x;
// checks y to the case's tolerance (NaN == NaN) and that both runs agree
// bit for bit. An unknown option or style/scaling name fails the case.
LlmResult RunRopeCase(const LlmCase& c);

}  // namespace gqa

#endif  // GQA_BENCH_GOLDEN_LLM_H_
