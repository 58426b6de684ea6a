// Float64 oracle of the attention core: grouped attention over dense
// double q/k/v with every mask the core knows (causal with per-batch query
// positions, ring retention, key lengths, sliding window, query/key/general
// masks, draft trees), the fully-masked-row policies, probabilities and
// dropout, and the LLM options (softcap, ALiBi, bias, sinks). Written from
// shared/spec/keras-gqa-semantics.md and llm-attention-semantics.md, not
// from the kernels: the one
// truth of the layer reference, the tests and the bench.
#ifndef GQA_SRC_REFERENCE_ATTENTION_REF_H_
#define GQA_SRC_REFERENCE_ATTENTION_REF_H_

#include <stdint.h>

#include <vector>

namespace gqa {
namespace reference {

// Empty vectors mean "absent". Query head u reads kv head u / (Hq / Hkv).
struct AttentionCall {
  int64_t batch = 0, q_len = 0, kv_len = 0;         // B, T, S
  int64_t q_heads = 0, kv_heads = 0, head_dim = 0;  // Hq, Hkv, D
  std::vector<double> q;                            // [B, T, Hq, D]
  std::vector<double> k;                            // [B, S, Hkv, D]
  std::vector<double> v;                            // [B, S, Hkv, Dv]
  int64_t value_dim = 0;                            // Dv; 0: D
  double scale = 1.0;                               // multiplies q.k

  // LLM logit options (llm-attention-semantics.md 2.2-3), in this order
  // after the scale: softcap c > 0 (c * tanh(x / c)), ALiBi slopes [Hq]
  // (x -= m[u] * |qpos - kpos|), an additive bias [B, Hq, T, S] (a -inf
  // bias masks the key); then learned sinks [Hq] join the softmax as one
  // logit per head with no value (a row with no allowed key gives 0).
  double softcap = 0.0;
  std::vector<double> alibi_slopes;  // [Hq]
  std::vector<double> bias;          // [B, Hq, T, S]
  std::vector<double> sinks;         // [Hq]

  // Query t of batch b sits at position position_offsets[b] + t (empty:
  // position_offset + t); key slot j at position j, or with a ring of
  // ring_capacity (== S) slots at last - ((last - j) mod C), last = L_b - 1.
  bool causal = false;  // key visible iff its position <= the query's
  int64_t position_offset = 0;
  std::vector<int64_t> position_offsets;  // [B]
  int64_t ring_capacity = 0;              // 0: linear keys
  std::vector<int64_t> key_lengths;       // [B] L_b: slots >= L_b unseen
  int64_t sliding_window = 0;             // 0: none; else |qpos - kpos| < W
  std::vector<uint8_t> query_mask;        // [B, T]
  std::vector<std::vector<uint8_t>> key_masks;  // each [B, S], ANDed
  std::vector<uint8_t> mask;                    // [B, Hq, T, S]
  // Draft verification (a KV cache's attend): keys at positions from query
  // 0's on are drafts d = kpos - qpos(b, 0), seen by query t iff
  // tree_mask[(b * T + t) * T + d] (not causally); under the uniform policy
  // a row with no allowed key averages the held keys (slots < L_b at
  // positions >= held_from[b], empty: 0).
  std::vector<uint8_t> tree_mask;  // [B, T, T]
  std::vector<int64_t> held_from;  // [B]

  // Rows with no allowed key: probabilities 1/S (true) or 0 (false).
  bool fully_masked_uniform = false;
  bool want_scores = false;  // probabilities after masking, before dropout

  // Dropout on the probabilities: keep_mask [B, Hq, T, S], or when empty
  // the seeded draw gqa::DropoutKeep(seed, flat index, float(rate)). Kept
  // values are scaled by 1 / (1 - rate); rate >= 1 drops everything.
  bool apply_dropout = false;
  double dropout_rate = 0.0;
  std::vector<uint8_t> keep_mask;
  uint64_t seed = 0;
};

struct AttentionResult {
  std::vector<double> out;     // [B, T, Hq, Dv]
  std::vector<double> scores;  // [B, Hq, T, S] when asked
};

// Assumes a valid call (shapes agree, Hkv divides Hq).
AttentionResult Attention(const AttentionCall& call);

// Position of key slot j of batch b (the ring rule above).
int64_t RefKeyPosition(const AttentionCall& call, int64_t b, int64_t j);

}  // namespace reference
}  // namespace gqa

#endif  // GQA_SRC_REFERENCE_ATTENTION_REF_H_
