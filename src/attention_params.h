// The attention core's descriptor (data only): what every front door fills
// in after validating its own arguments, and what the plan and the kernels
// read. Adding a core option starts here.
#ifndef GQA_SRC_ATTENTION_PARAMS_H_
#define GQA_SRC_ATTENTION_PARAMS_H_

#include <stdint.h>

namespace gqa {

// Element types of q/k/v/out; kQ8 and kQ4 only for blocked K/V (KvBlocks).
enum class ElemType : int { kF32 = 0, kF16 = 1, kQ8 = 2, kQ4 = 3 };

// Blocked K/V (KV cache v2, include/gqa/block_cache.h documents the
// format). Slot j of batch b, kv head g lives in pool block
//   blk = pool + table[b * table_stride + j / block_tokens] * block_bytes
// row r = j % block_tokens: its key codes at blk + k_codes + (r * Hkv + g)
// * k_row_bytes, its f16 key scales at blk + k_scales + (r * Hkv + g) *
// k_row_scales * 2 (values likewise, v_*). Codes are f32, f16, int8 (q8:
// one scale per row) or 4-bit (q4: one scale per 32 elements; in each
// group of 32, byte i holds element i low and i + 16 high, as code + 8).
// The caller guarantees a valid block for every column that holds a slot
// the call may read (slots below min(key_lengths[b], S)).
struct KvBlocks {
  const unsigned char* pool = nullptr;  // null: k/v are strided views
  const int32_t* table = nullptr;       // [B][table_stride]
  int64_t table_stride = 0;
  int64_t block_tokens = 0;
  int64_t block_bytes = 0;
  int64_t k_codes = 0, k_scales = 0, v_codes = 0, v_scales = 0;
  int64_t k_row_bytes = 0, v_row_bytes = 0;
  int64_t k_row_scales = 0, v_row_scales = 0;
};

// The core's descriptor: one masked, grouped attention over q/k/v as
// strided views. Data only; the names follow gqa_attention_params
// (include/gqa/attention.h) where the public API has the field. All
// strides are in elements. Query head u reads kv head u / (Hq / Hkv).
struct AttentionParams {
  int64_t batch = 0;      // B
  int64_t q_len = 0;      // T
  int64_t kv_len = 0;     // S
  int64_t q_heads = 0;    // Hq
  int64_t kv_heads = 0;   // Hkv
  int64_t head_dim = 0;   // D: q and k rows
  int64_t value_dim = 0;  // Dv: v and out rows; 0 means D (ValueDim)

  // q: [B, T, Hq, D] viewed through strides (last axis contiguous).
  const void* q = nullptr;
  int64_t q_stride_batch = 0, q_stride_token = 0, q_stride_head = 0;
  // k: [B, S, Hkv, D], v: [B, S, Hkv, Dv] viewed through strides (last
  // axis contiguous).
  const void* k = nullptr;
  int64_t k_stride_batch = 0, k_stride_token = 0, k_stride_head = 0;
  const void* v = nullptr;
  int64_t v_stride_batch = 0, v_stride_token = 0, v_stride_head = 0;
  ElemType q_type = ElemType::kF32;
  ElemType kv_type = ElemType::kF32;
  // q8 / q4 blocked K: the decode kernel may quantize each query row to
  // int8 and compute q.k in integers where the CPU has a dot product for
  // it (platforms/qk_int8.h); false: f32 on the dequantized keys.
  bool qk_int8 = false;
  // When kv_blocks.pool is set, k, v and their strides are unused: K/V
  // are read from the blocks (kv_len = the cache's slots per sequence).
  KvBlocks kv_blocks;

  // out: [B, T, Hq, Dv] through strides, f32 or f16.
  void* out = nullptr;
  ElemType out_type = ElemType::kF32;
  int64_t out_stride_batch = 0, out_stride_token = 0, out_stride_head = 0;

  float scale = 1.0f;  // multiplies q.k

  // Logit options (llm-attention-semantics.md 2.2-2.4), in this order on
  // x = scale * q.k, before the masks; zero / null: off.
  float softcap = 0.0f;                 // > 0: x = c * tanh(x / c)
  const float* alibi_slopes = nullptr;  // [Hq]: x -= m[u] * |pq - pk|
  const float* bias = nullptr;          // x += bias[b, u, t, s], strided
  int64_t bias_stride_batch = 0, bias_stride_head = 0, bias_stride_query = 0,
          bias_stride_key = 0;
  // [Hq] learned sinks: an extra logit per head in the softmax, no value.
  const float* sinks = nullptr;

  // Masks (nonzero = may attend); all optional, ANDed together.
  bool causal = false;          // key s visible iff s <= t + position_offset
  int64_t position_offset = 0;  // absolute position of query 0
  // Per-batch position of query 0 [B] (KV-cache decoding); overrides
  // position_offset when set.
  const int64_t* position_offsets = nullptr;
  // Ring KV cache: slot j of batch b holds the latest position p < L_b with
  // p % ring_capacity == j, L_b = key_lengths[b] tokens written so far
  // (kv_len == ring_capacity). 0: keys are positions 0..S-1.
  int64_t ring_capacity = 0;
  int64_t sliding_window = 0;  // 0: none; else |t + offset - s| < window
  // Draft verification (KV cache, spec 4.4): the keys at the queries' own
  // positions QueryPosition(b, 0) + d, d in [0, T), are the drafts; query t
  // sees draft d iff tree_mask[b * tree_stride_batch + t * T + d] != 0, in
  // place of causality among them (older keys stay causal). [B|1, T, T].
  const uint8_t* tree_mask = nullptr;
  int64_t tree_stride_batch = 0;
  // Ring caches that truncated: positions below held_from[b] are no longer
  // held (their slots are not keys of a uniform row's average). Null: all
  // filled slots are held.
  const int64_t* held_from = nullptr;
  const int64_t* key_lengths = nullptr;  // [B]: keys >= length never seen
  const uint8_t* query_mask = nullptr;   // [B, T] contiguous
  const uint8_t* key_mask = nullptr;     // [B, S] contiguous
  const uint8_t* key_mask2 = nullptr;    // [B, S] contiguous (second source)
  // General mask read in place; stride 0 on a broadcast axis.
  const uint8_t* mask = nullptr;
  int64_t mask_stride_batch = 0, mask_stride_head = 0, mask_stride_query = 0,
          mask_stride_key = 0;

  // Rows with no allowed key: probabilities 1/S (true) or 0 (false).
  bool fully_masked_uniform = false;

  // Optional probabilities after masking, before dropout: [B, Hq, T, S]
  // contiguous, in scores_type.
  void* scores = nullptr;
  ElemType scores_type = ElemType::kF32;

  // Dropout on the probabilities (only when apply_dropout).
  bool apply_dropout = false;
  float dropout_rate = 0.0f;
  const uint8_t* keep_mask = nullptr;  // [B, Hq, T, S] or null: seeded draw
  uint64_t seed = 0;
};

// Dv, the head size of v and out: value_dim, or head_dim where unset.
inline int64_t ValueDim(const AttentionParams& p) {
  return p.value_dim > 0 ? p.value_dim : p.head_dim;
}

}  // namespace gqa

#endif  // GQA_SRC_ATTENTION_PARAMS_H_
