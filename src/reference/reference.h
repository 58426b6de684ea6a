// Plain scalar reference of the whole GroupQueryAttention layer, float64
// accumulation, written from the spec (shared/spec/keras-gqa-semantics.md)
// and independent of the fast path: the oracle of the tests and the bench.
#ifndef GQA_SRC_REFERENCE_REFERENCE_H_
#define GQA_SRC_REFERENCE_REFERENCE_H_

#include <stdint.h>

#include <vector>

namespace gqa {
namespace reference {

enum class Policy { kKeras, kZero, kUniform };

struct Config {
  int64_t head_dim = 0, q_heads = 0, kv_heads = 0;
  int64_t q_features = 0, k_features = 0, v_features = 0;
  bool use_bias = true, use_gate = false;
  int64_t sliding_window = 0;  // 0: none
  double dropout = 0.0;
  uint64_t seed = 0;
  Policy policy = Policy::kKeras;
};

// Keras layouts, row-major; biases empty when use_bias is false.
struct Weights {
  std::vector<double> query_kernel, query_bias;    // (Fq,Hq,D), (Hq,D)
  std::vector<double> key_kernel, key_bias;        // (Fk,Hkv,D), (Hkv,D)
  std::vector<double> value_kernel, value_bias;    // (Fv,Hkv,D), (Hkv,D)
  std::vector<double> gate_kernel, gate_bias;      // (Fq,Hq,D), (Hq,D)
  std::vector<double> output_kernel, output_bias;  // (Hq,D,Fq), (Fq)
};

// Empty vectors mean "absent".
struct Call {
  int64_t batch = 0, q_len = 0, kv_len = 0;
  std::vector<double> query, value, key;  // key empty: value is the key
  std::vector<uint8_t> attention_mask;    // rank = attention_mask_dims.size()
  std::vector<int64_t> attention_mask_dims;
  std::vector<uint8_t> query_mask, value_mask, key_mask;
  bool causal = false;
  bool training = false;
  std::vector<uint8_t> keep_mask;  // [B,Hq,T,S]; empty: seeded draw
  bool want_scores = false;
};

struct Result {
  std::vector<double> output;  // [B,T,Fq]
  std::vector<double> scores;  // [B,Hq,T,S] when asked
};

// Assumes a valid call (the tests of validation go through the library).
Result Forward(const Config& config, const Weights& weights, const Call& call);

}  // namespace reference
}  // namespace gqa

#endif  // GQA_SRC_REFERENCE_REFERENCE_H_
