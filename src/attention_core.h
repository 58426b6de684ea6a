// The attention core's internal interface: one plain struct describing a
// masked, grouped attention over pre-projected q/k/v as strided views, and
// the one entry point that dispatches to the best Highway target.
#ifndef GQA_SRC_ATTENTION_CORE_H_
#define GQA_SRC_ATTENTION_CORE_H_

#include <stddef.h>
#include <stdint.h>

#include "gqa/gqa.h"

namespace gqa {

enum class ElemType : int { kF32 = 0, kF16 = 1 };

// All strides are in elements. Query head u reads kv head u / (Hq / Hkv).
struct AttentionParams {
  int64_t batch = 0;     // B
  int64_t q_len = 0;     // T
  int64_t kv_len = 0;    // S
  int64_t q_heads = 0;   // Hq
  int64_t kv_heads = 0;  // Hkv
  int64_t head_dim = 0;  // D

  // q: [B, T, Hq, D] viewed through strides (last axis contiguous).
  const void* q = nullptr;
  int64_t q_stride_b = 0, q_stride_t = 0, q_stride_h = 0;
  // k, v: [B, S, Hkv, D] viewed through strides (last axis contiguous).
  const void* k = nullptr;
  int64_t k_stride_b = 0, k_stride_s = 0, k_stride_h = 0;
  const void* v = nullptr;
  int64_t v_stride_b = 0, v_stride_s = 0, v_stride_h = 0;
  ElemType q_type = ElemType::kF32;
  ElemType kv_type = ElemType::kF32;

  // out: [B, T, Hq, D] through strides, f32 or f16.
  void* out = nullptr;
  ElemType out_type = ElemType::kF32;
  int64_t out_stride_b = 0, out_stride_t = 0, out_stride_h = 0;

  float scale = 1.0f;  // multiplies q.k

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
  const int64_t* key_lengths = nullptr;  // [B]: keys >= length never seen
  const uint8_t* query_mask = nullptr;   // [B, T] contiguous
  const uint8_t* key_mask0 = nullptr;    // [B, S] contiguous
  const uint8_t* key_mask1 = nullptr;    // [B, S] contiguous (second source)
  // General mask read in place; stride 0 on a broadcast axis.
  const uint8_t* mask = nullptr;
  int64_t mask_stride_b = 0, mask_stride_h = 0, mask_stride_t = 0,
          mask_stride_s = 0;

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

// How the kernel of the current Highway target splits a call: blocks of
// query positions (all heads of a kv group together) and per-slot scratch.
struct AttentionPlan {
  int64_t lanes = 0;            // f32 lanes of the target
  int64_t block_positions = 0;  // Tb: query positions per work item
  int64_t rows = 0;             // G * Tb query rows per item
  int64_t rows_padded = 0;      // Mp
  int64_t dim_padded = 0;       // Dp
  int64_t keys_per_tile = 0;    // Bk
  int64_t blocks_per_head = 0;  // ceil(T / Tb)
  int64_t items = 0;            // B * Hkv * blocks_per_head
  int64_t slot_bytes = 0;       // scratch of one worker (64-byte multiple)
  // Decode path (few query rows per kv head): keys split in fixed chunks,
  // partial (max, sum, acc) per chunk merged in chunk order.
  bool decode = false;
  int64_t splits = 0;        // chunks of the key axis per (b, g)
  int64_t split_keys = 0;    // keys per chunk
  int64_t shared_bytes = 0;  // partials [B*Hkv*splits][rows][Dp + 2] f32
};
AttentionPlan PlanAttention(const AttentionParams& p);

// Workspace of RunAttention for `slots` concurrent workers: one slot each,
// plus the shared partial results of the decode path. Independent of S.
inline int64_t AttentionWorkspaceBytes(const AttentionPlan& plan,
                                       int64_t slots) {
  return plan.shared_bytes + plan.slot_bytes * slots;
}

// Position of query t of batch b, and of the key in slot j.
inline int64_t QueryPosition(const AttentionParams& p, int64_t b, int64_t t) {
  return (p.position_offsets ? p.position_offsets[b] : p.position_offset) + t;
}
inline int64_t KeyPosition(const AttentionParams& p, int64_t b, int64_t j) {
  if (p.ring_capacity == 0) return j;
  const int64_t last = p.key_lengths[b] - 1;
  return last -
         ((last - j) % p.ring_capacity + p.ring_capacity) % p.ring_capacity;
}

// Computes out (and scores) for p with at most `slots` workers (the
// workspace holds that many slots; 64-byte aligned). Inputs are assumed
// validated. Results are bitwise identical for any pool size and slots.
void RunAttention(const AttentionParams& p, void* workspace, int64_t slots,
                  pthreadpool_t pool);

// The seeded dropout draw: keep decision for flat probability index `index`
// of [B, Hq, T, S]. A counter-based hash (splitmix64 finaliser), so every
// element's draw is independent of tiling and thread count. Keeps with
// probability 1 - rate, to 2^-24 resolution.
inline bool DropoutKeep(uint64_t seed, uint64_t index, float rate) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (index + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  const float u = static_cast<float>(z >> 40) * (1.0f / 16777216.0f);
  return u < 1.0f - rate;
}

}  // namespace gqa

#endif  // GQA_SRC_ATTENTION_CORE_H_
