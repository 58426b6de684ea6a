// Helpers shared by the attention kernels (flash and decode), compiled once
// per Highway target: scratch carving, f16/f32 row loads, the masked exp,
// which keys a query may see, the output-row store, the uniform row of the
// fully-masked policy, and the work-stealing loop over work items. The one
// copy of each; the kernels include this file, never each other.

#if defined(GQA_SRC_KERNELS_ATTENTION_COMMON_INL_H_) == \
    defined(HWY_TARGET_TOGGLE)
#ifdef GQA_SRC_KERNELS_ATTENTION_COMMON_INL_H_
#undef GQA_SRC_KERNELS_ATTENTION_COMMON_INL_H_
#else
#define GQA_SRC_KERNELS_ATTENTION_COMMON_INL_H_
#endif

#include <math.h>
#include <pthreadpool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <atomic>

#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"
#include "src/attention_core.h"
#include "src/half.h"
#include "src/kernels/dequant-inl.h"
#include "src/kernels/half_load-inl.h"

HWY_BEFORE_NAMESPACE();
namespace gqa {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

HWY_INLINE int64_t RoundUp(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Carves regions off a 64-byte-aligned slot, in order, each rounded up to
// 64 bytes. Carved at base 0 (nullptr) it touches nothing and Bytes() is
// the slot's size: the plan sizes a slot with the very code that carves it.
class ScratchCarver {
 public:
  explicit ScratchCarver(unsigned char* base)
      : base_(reinterpret_cast<uintptr_t>(base)) {}
  template <typename T>
  T* Take(int64_t count) {
    T* region = reinterpret_cast<T*>(base_ + static_cast<uintptr_t>(bytes_));
    bytes_ += RoundUp(count * static_cast<int64_t>(sizeof(T)), 64);
    return region;
  }
  int64_t Bytes() const { return bytes_; }

 private:
  uintptr_t base_;
  int64_t bytes_ = 0;
};

// One element as f32: f32 as is, f16 widened.
template <typename T>
HWY_INLINE float ToF32(T x);
template <>
HWY_INLINE float ToF32<float>(float x) {
  return x;
}
template <>
HWY_INLINE float ToF32<uint16_t>(uint16_t x) {
  return HalfToFloat(x);
}

// Lanes(df) elements of a K/V row at p (any alignment) as f32.
template <class DF>
HWY_INLINE hn::Vec<DF> LoadRow(DF df, const float* HWY_RESTRICT p) {
  return hn::LoadU(df, p);
}
template <class DF>
HWY_INLINE hn::Vec<DF> LoadRow(DF df, const uint16_t* HWY_RESTRICT p) {
  return LoadF16AsF32(df, p);  // exact for Inf and NaN on every target
}
// int8 codes (a q8 row whose scale the caller applies) as f32.
template <class DF>
HWY_INLINE hn::Vec<DF> LoadRow(DF df, const int8_t* HWY_RESTRICT p) {
  const hn::Rebind<int32_t, DF> di;
  const hn::Rebind<int8_t, DF> d8;
  return hn::ConvertTo(df, hn::PromoteTo(di, hn::LoadU(d8, p)));
}

// dst[0, n) = src[0, n) as f32 (any alignment, any n).
template <class DF>
HWY_INLINE void RowToF32(DF df, const float* src, float* dst, int64_t n) {
  // Rows are short (one head): an inline vector copy beats a libc call.
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  int64_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::LoadU(df, src + i), df, dst + i);
  for (; i < n; ++i) dst[i] = src[i];
}
template <class DF>
HWY_INLINE void RowToF32(DF df, const uint16_t* src, float* dst, int64_t n) {
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  int64_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(LoadF16AsF32(df, src + i), df, dst + i);
  for (; i < n; ++i) dst[i] = HalfToFloat(src[i]);
}

// dst[0, n) = a blocked K/V row as f32, whatever its element type.
template <typename T, class DF>
HWY_INLINE void BlockedRowToF32(DF df, const KvRowRef& row, float* dst,
                                int64_t n) {
  if constexpr (hwy::IsSame<T, KvQ8>()) {
    DequantRowQ8(row.codes, row.scales, dst, n);
  } else if constexpr (hwy::IsSame<T, KvQ4>()) {
    DequantRowQ4(row.codes, row.scales, dst, n);
  } else {
    RowToF32(df, reinterpret_cast<const T*>(row.codes), dst, n);
  }
}

// exp(x) as hn::Exp for x in [-104, 88] (NaN stays NaN): for callers that
// know their range (the decode scores under a softcap c < 52).
template <class DF, class V>
HWY_INLINE V ExpInRange(DF df, V x) {
  const V kHalf = hn::Set(df, 0.5f);
  const V kNegZero = hn::Set(df, -0.0f);
  const V kOne = hn::Set(df, 1.0f);
  const V kOneOverLog2 = hn::Set(df, 1.442695040888963407359924681f);
  hn::impl::ExpImpl<float> impl;
  const auto q = impl.ToInt32(
      df, hn::MulAdd(x, kOneOverLog2, hn::Or(kHalf, hn::And(x, kNegZero))));
  return impl.LoadExpShortRange(
      df, hn::Add(impl.ExpPoly(df, impl.ExpReduce(df, x, q)), kOne), q);
}

// exp(x) as hn::Exp (x <= 88), but NaN stays NaN (hn::Exp returns 0 for
// it, which would hide a NaN logit) and x < -104, -inf included, gives 0.
// Same cost as hn::Exp.
template <class DF, class V>
HWY_INLINE V ExpKeepNaN(DF df, V x) {
  return hn::IfThenZeroElse(hn::Lt(x, hn::Set(df, -104.0f)), ExpInRange(df, x));
}

// Key slot j of batch b passes the key masks ([B, S] each, optional).
HWY_INLINE bool KeyOpen(const AttentionParams& p, int64_t b, int64_t j) {
  const int64_t S = p.kv_len;
  return (!p.key_mask || p.key_mask[b * S + j]) &&
         (!p.key_mask2 || p.key_mask2[b * S + j]);
}

// Key slots [*lo, *hi) of batch b that a query at a position in
// [first_pos, last_pos] may see: the keys written so far (key_lengths, the
// filled part of a ring), cut by the causal and window bounds where key
// positions are the slot indices (no ring). *hi >= *lo.
HWY_INLINE void VisibleKeys(const AttentionParams& p, int64_t b,
                            int64_t first_pos, int64_t last_pos, int64_t* lo,
                            int64_t* hi) {
  const int64_t len = p.key_lengths ? p.key_lengths[b] : p.kv_len;
  *lo = 0;
  *hi = len;
  if (p.ring_capacity > 0) {
    // Slots filled so far; positions come from KeyPosition per key.
    if (*hi > p.ring_capacity) *hi = p.ring_capacity;
  } else {
    // A tree mask may show a query any draft: causality stops at the last.
    const int64_t causal_last =
        p.tree_mask ? QueryPosition(p, b, p.q_len - 1) : last_pos;
    if (p.causal && causal_last + 1 < *hi) *hi = causal_last + 1;
    if (p.sliding_window > 0) {
      if (first_pos - p.sliding_window + 1 > *lo)
        *lo = first_pos - p.sliding_window + 1;
      if (last_pos + p.sliding_window < *hi) *hi = last_pos + p.sliding_window;
    }
  }
  if (*hi < *lo) *hi = *lo;
}

// Flat index of (b, u, t, key 0) in scores / keep_mask [B, Hq, T, S].
HWY_INLINE uint64_t ScoreRow(const AttentionParams& p, int64_t b, int64_t u,
                             int64_t t) {
  return static_cast<uint64_t>(((b * p.q_heads + u) * p.q_len + t) * p.kv_len);
}

HWY_INLINE void StoreScore(const AttentionParams& p, uint64_t index,
                           float value) {
  if (p.scores_type == ElemType::kF16) {
    static_cast<uint16_t*>(p.scores)[index] = FloatToHalf(value);
  } else {
    static_cast<float*>(p.scores)[index] = value;
  }
}

// out[b, t, u, :] = o[0, Dv), in out_type.
HWY_INLINE void StoreOutputRow(const AttentionParams& p, int64_t b, int64_t t,
                               int64_t u, const float* o) {
  const int64_t D = ValueDim(p);
  const int64_t at =
      b * p.out_stride_batch + t * p.out_stride_token + u * p.out_stride_head;
  if (p.out_type == ElemType::kF16) {
    uint16_t* out = static_cast<uint16_t*>(p.out) + at;
    for (int64_t d = 0; d < D; ++d) out[d] = FloatToHalf(o[d]);
  } else {
    memcpy(static_cast<float*>(p.out) + at, o, static_cast<size_t>(D) * 4);
  }
}

// o [Dv] of row (b, query head u, query t) that may attend no key, under the
// uniform policy: probabilities 1/S on every key, masked ones included
// (Keras' fused path), dropout still applied to them, weights applied per
// key (no overflow of the sum). Writes the row's scores when asked.
template <typename T>
void UniformRow(const AttentionParams& p, int64_t b, int64_t u, int64_t t,
                float* o) {
  const int64_t D = ValueDim(p), S = p.kv_len;
  const int64_t g = u / (p.q_heads / p.kv_heads);
  // Blocked K/V: slots past the ones written (past min(key_lengths[b], S))
  // have no block to read; they weigh in as zero rows.
  int64_t readable = S;
  if (p.kv_blocks.pool != nullptr && p.key_lengths != nullptr &&
      p.key_lengths[b] < S)
    readable = p.key_lengths[b];
  // Draft verification over a cache: the average is over the tokens the
  // cache holds (spec 4.3), slots past the written ones and positions below
  // held_from left out.
  const bool held_only = p.tree_mask != nullptr && p.key_lengths != nullptr;
  int64_t floor = 0, held = S;
  if (held_only) {
    const int64_t len = p.key_lengths[b];
    if (len < readable) readable = len;
    floor = p.held_from ? p.held_from[b] : 0;
    held = len - floor < readable ? len - floor : readable;
  }
  const uint64_t base = ScoreRow(p, b, u, t);
  const float uniform = held > 0 ? 1.0f / static_cast<float>(held) : 0.0f;
  const float keep_scale =
      p.dropout_rate >= 1.0f ? 0.0f : 1.0f / (1.0f - p.dropout_rate);
  for (int64_t d = 0; d < D; ++d) o[d] = 0.0f;
  for (int64_t j = 0; j < S; ++j) {
    float w = uniform;
    if (p.apply_dropout) {
      const bool keep = p.keep_mask
                            ? p.keep_mask[base + j] != 0
                            : DropoutKeep(p.seed, base + j, p.dropout_rate);
      w = keep ? w * keep_scale : 0.0f;
    }
    if (p.scores) StoreScore(p, base + j, uniform);
    if (w == 0.0f || j >= readable) continue;
    if (held_only && KeyPosition(p, b, j) < floor) continue;
    if (p.kv_blocks.pool != nullptr) {
      const KvRowRef vr = BlockedRow(p, true, b, j, g);
      for (int64_t d = 0; d < D; ++d) o[d] += w * BlockedElement<T>(vr, d);
    } else if constexpr (!IsKvCodes<T>()) {
      const T* vr = static_cast<const T*>(p.v) + b * p.v_stride_batch +
                    g * p.v_stride_head + j * p.v_stride_token;
      for (int64_t d = 0; d < D; ++d) o[d] += w * ToF32<T>(vr[d]);
    }
  }
}

// Work items [0, count) handed out one at a time to whichever worker asks
// first. Items write disjoint outputs, each computed the same way whatever
// worker runs it, so results never depend on the thread count. A Context
// has `next`, `count`, Carve(slot) -> the slot's scratch, and Run(item,
// scratch).
struct WorkItems {
  std::atomic<int64_t> next{0};
  int64_t count = 0;
};

template <class Context>
void StealItemsTask(void* context, size_t slot) {
  Context& ctx = *static_cast<Context*>(context);
  const auto scratch = ctx.Carve(slot);
  for (;;) {
    const int64_t i = ctx.next.fetch_add(1, std::memory_order_relaxed);
    if (i >= ctx.count) break;
    ctx.Run(i, scratch);
  }
}

// Runs every item of ctx on at most `slots` workers of pool.
template <class Context>
void RunItems(pthreadpool_t pool, Context* ctx, int64_t slots) {
  const int64_t workers = slots < ctx->count ? slots : ctx->count;
  pthreadpool_parallelize_1d(pool, &StealItemsTask<Context>, ctx,
                             static_cast<size_t>(workers), 0);
}

}  // namespace HWY_NAMESPACE
}  // namespace gqa
HWY_AFTER_NAMESPACE();

#endif  // include guard per target
