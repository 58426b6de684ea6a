// The decode kernel's second pass, compiled once per Highway target: the
// partial (max, sum, acc) of each key chunk merged in chunk order into the
// output rows of one batch, the sinks joining there (fully masked and
// non-finite rows resolved here).

#if defined(GQA_SRC_KERNELS_DECODE_MERGE_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef GQA_SRC_KERNELS_DECODE_MERGE_INL_H_
#undef GQA_SRC_KERNELS_DECODE_MERGE_INL_H_
#else
#define GQA_SRC_KERNELS_DECODE_MERGE_INL_H_
#endif

#include <math.h>
#include <stdint.h>

#include "hwy/highway.h"
#include "src/attention_core.h"
#include "src/kernels/attention_common-inl.h"

HWY_BEFORE_NAMESPACE();
namespace gqa {
namespace HWY_NAMESPACE {

// Whether query t of batch b may attend any key (the masks of DecodeItem,
// one key at a time: only for rows whose softmax sum came out 0).
HWY_INLINE bool DecodeAnyAllowed(const AttentionParams& p, int64_t b,
                                 int64_t u, int64_t t) {
  // A -inf bias masks its key (spec 2.4).
  const float* bias_row =
      p.bias ? p.bias + b * p.bias_stride_batch + u * p.bias_stride_head +
                   t * p.bias_stride_query
             : nullptr;
  const int64_t len = p.key_lengths ? p.key_lengths[b] : p.kv_len;
  int64_t filled = len;
  if (p.ring_capacity > 0 && filled > p.ring_capacity) filled = p.ring_capacity;
  if (filled > p.kv_len) filled = p.kv_len;
  const int64_t qpos = QueryPosition(p, b, t);
  // Drafts (keys from the first query's position on) follow the tree.
  const int64_t draft0 = p.tree_mask ? QueryPosition(p, b, 0) : INT64_MAX;
  for (int64_t j = 0; j < filled; ++j) {
    if (!KeyOpen(p, b, j)) continue;
    if (bias_row && bias_row[j * p.bias_stride_key] == -INFINITY) continue;
    const int64_t kpos = KeyPosition(p, b, j);
    if (kpos >= draft0 ? !TreeOpen(p, b, t, kpos - draft0)
                       : p.causal && kpos > qpos)
      continue;
    if (p.sliding_window > 0 &&
        (qpos - kpos >= p.sliding_window || kpos - qpos >= p.sliding_window))
      continue;
    return true;
  }
  return false;
}

// Merges the chunks of batch b in chunk order and writes its rows out.
template <typename T>
void DecodeMerge(const AttentionParams& p, const KernelPlan& plan, int64_t b,
                 const float* partials, float* tmp) {
  const int64_t R = plan.rows, Dp = plan.value_dim_padded, D = ValueDim(p);
  for (int64_t r = 0; r < R; ++r) {
    // Chunk c: (m_c, l_c, acc_c = its weighted mean of V). l_c == 0: no
    // allowed key in the chunk; NaN l_c: non-finite logits, kept NaN. The
    // row is fully masked only when every l_c is 0 (l == 0 below).
    auto part_of = [&](int64_t c) {
      return partials + ((b * plan.splits + c) * R + r) * (Dp + 2);
    };
    const int64_t u = r / p.q_len, t = r % p.q_len;
    // A sink is one more part: (sigma, l = 1, acc = 0).
    float m = p.sinks ? p.sinks[u] : -INFINITY;
    for (int64_t c = 0; c < plan.splits; ++c) {
      const float* part = part_of(c);
      if (part[1] != 0.0f && part[0] > m) m = part[0];
    }
    float l = p.sinks ? expf(p.sinks[u] - m) : 0.0f;
    for (int64_t c = 0; c < plan.splits; ++c) {
      const float* part = part_of(c);
      if (part[1] != 0.0f) l += part[1] * expf(part[0] - m);
    }
    for (int64_t d = 0; d < D; ++d) tmp[d] = 0.0f;
    if (l != 0.0f) {
      const float inv = 1.0f / l;
      for (int64_t c = 0; c < plan.splits; ++c) {
        const float* part = part_of(c);
        if (part[1] == 0.0f) continue;
        const float w = part[1] * expf(part[0] - m) * inv;
        for (int64_t d = 0; d < D; ++d) tmp[d] += part[2 + d] * w;
      }
    }
    // l == 0 with an allowed key: all its logits are -inf (infinite q or k,
    // or scale*q.k overflowing): NaN, as exp(-inf + inf).
    if (l == 0.0f && DecodeAnyAllowed(p, b, u, t)) {
      for (int64_t d = 0; d < D; ++d) tmp[d] = NAN;
    } else if (l == 0.0f && p.fully_masked_uniform) {
      UniformRow<T>(p, b, u, t, tmp);
    }
    StoreOutputRow(p, b, t, u, tmp);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace gqa
HWY_AFTER_NAMESPACE();

#endif  // include guard per target
