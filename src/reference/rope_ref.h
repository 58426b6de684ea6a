// Float64 oracle of RoPE with the optional RMS norm first
// (shared/spec/llm-attention-semantics.md 5), written from the spec like
// shared/spec/llm_attention_ref.py and independent of src/rope.cc: the
// truth of the RoPE tests.
#ifndef GQA_SRC_REFERENCE_ROPE_REF_H_
#define GQA_SRC_REFERENCE_ROPE_REF_H_

#include <stdint.h>

#include <string>
#include <vector>

namespace gqa {
namespace reference {

struct RopeCall {
  int64_t batch = 0, tokens = 0, heads = 0, head_dim = 0;  // B, T, H, D
  std::vector<double> x;                                   // [B, T, H, D]
  std::vector<int64_t> positions;                          // [B, T]
  int64_t rotary_dim = 0;                                  // R; 0: D
  bool interleaved = false;  // pairs (2i, 2i+1), else (i, i + R/2)
  double theta = 10000.0;
  std::string scaling = "none";  // none | linear | llama3
  double factor = 1.0, low_freq_factor = 1.0, high_freq_factor = 4.0;
  double original_max_position = 8192.0;
  std::vector<double> norm_weight;  // [D], or empty: no norm
  double eps = 1e-6;
};

// The R/2 frequencies after scaling.
std::vector<double> RopeFrequencies(const RopeCall& call);

// y [B, T, H, D]. Assumes a valid call.
std::vector<double> Rope(const RopeCall& call);

}  // namespace reference
}  // namespace gqa

#endif  // GQA_SRC_REFERENCE_ROPE_REF_H_
