// Attention kernel, compiled once per Highway target: masked online-softmax
// attention of one query row at a time over strided q/k/v (f32 or f16
// storage, f32 arithmetic).
//
// Per row (b, u, t) with kv head g = u / (Hq/Hkv):
//   x_s = scale * q[b,t,u,:] . k[b,s,g,:]      for allowed s in [lo, hi)
//   online softmax: running max m, running sum l, acc rescaled by exp(m'-m)
//   out[b,t,u,:] = acc / l                      (acc lives in the output row)
// [lo, hi) comes from the causal and window bounds, so keys outside them are
// never touched; other masks are tested per key. Work per allowed key: 2*D
// loads and 4*D flops. With scores requested, a first pass finds (m, l) and a
// second writes p = exp(x - m) / l and accumulates p.v.
//
// This is the correct, simple row kernel; the tiled group kernel replaces it
// behind the same RunAttention entry.

#if defined(GQA_SRC_KERNELS_ATTENTION_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef GQA_SRC_KERNELS_ATTENTION_INL_H_
#undef GQA_SRC_KERNELS_ATTENTION_INL_H_
#else
#define GQA_SRC_KERNELS_ATTENTION_INL_H_
#endif

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include <pthreadpool.h>

#include "hwy/highway.h"
#include "src/attention_core.h"
#include "src/half.h"

HWY_BEFORE_NAMESPACE();
namespace gqa {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// f16 data travels as uint16_t bits; vectors load it through Highway's type.
HWY_INLINE float ScalarLoad(const float* p) { return *p; }
HWY_INLINE float ScalarLoad(const uint16_t* p) { return HalfToFloat(*p); }

template <class DF>
HWY_INLINE hn::Vec<DF> LoadF32(DF df, const float* p) {
  return hn::LoadU(df, p);
}
template <class DF>
HWY_INLINE hn::Vec<DF> LoadF32(DF df, const uint16_t* p) {
  const hn::Rebind<hwy::float16_t, DF> dh;
  return hn::PromoteTo(df, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(p)));
}

// q[0..D) . k[0..D) in f32.
template <class DF, typename T>
HWY_INLINE float DotRow(DF df, const T* HWY_RESTRICT q,
                        const T* HWY_RESTRICT k, size_t dim) {
  const size_t N = hn::Lanes(df);
  auto sum0 = hn::Zero(df);
  auto sum1 = hn::Zero(df);
  size_t d = 0;
  for (; d + 2 * N <= dim; d += 2 * N) {
    sum0 = hn::MulAdd(LoadF32(df, q + d), LoadF32(df, k + d), sum0);
    sum1 = hn::MulAdd(LoadF32(df, q + d + N), LoadF32(df, k + d + N), sum1);
  }
  for (; d + N <= dim; d += N) {
    sum0 = hn::MulAdd(LoadF32(df, q + d), LoadF32(df, k + d), sum0);
  }
  float r = hn::GetLane(hn::SumOfLanes(df, hn::Add(sum0, sum1)));
  for (; d < dim; ++d) r += ScalarLoad(q + d) * ScalarLoad(k + d);
  return r;
}

// acc = acc * alpha + w * v.
template <class DF, typename T>
HWY_INLINE void ScaleAccumulate(DF df, float* HWY_RESTRICT acc, float alpha,
                                float w, const T* HWY_RESTRICT v, size_t dim) {
  const size_t N = hn::Lanes(df);
  const auto va = hn::Set(df, alpha);
  const auto vw = hn::Set(df, w);
  size_t d = 0;
  for (; d + N <= dim; d += N) {
    const auto a = hn::Mul(hn::LoadU(df, acc + d), va);
    hn::StoreU(hn::MulAdd(vw, LoadF32(df, v + d), a), df, acc + d);
  }
  for (; d < dim; ++d) acc[d] = acc[d] * alpha + w * ScalarLoad(v + d);
}

// acc += w * v.
template <class DF, typename T>
HWY_INLINE void Accumulate(DF df, float* HWY_RESTRICT acc, float w,
                           const T* HWY_RESTRICT v, size_t dim) {
  const size_t N = hn::Lanes(df);
  const auto vw = hn::Set(df, w);
  size_t d = 0;
  for (; d + N <= dim; d += N) {
    hn::StoreU(hn::MulAdd(vw, LoadF32(df, v + d), hn::LoadU(df, acc + d)), df,
               acc + d);
  }
  for (; d < dim; ++d) acc[d] += w * ScalarLoad(v + d);
}

template <class DF>
HWY_INLINE void ScaleRow(DF df, float* HWY_RESTRICT acc, float s,
                         size_t dim) {
  const size_t N = hn::Lanes(df);
  const auto vs = hn::Set(df, s);
  size_t d = 0;
  for (; d + N <= dim; d += N) {
    hn::StoreU(hn::Mul(hn::LoadU(df, acc + d), vs), df, acc + d);
  }
  for (; d < dim; ++d) acc[d] *= s;
}

template <class DF>
HWY_INLINE void ZeroRow(DF df, float* HWY_RESTRICT acc, size_t dim) {
  const size_t N = hn::Lanes(df);
  size_t d = 0;
  for (; d + N <= dim; d += N) hn::StoreU(hn::Zero(df), df, acc + d);
  for (; d < dim; ++d) acc[d] = 0.0f;
}

// Everything one row needs to know about masks and dropout.
struct RowContext {
  const uint8_t* key_mask0;  // [S] of this batch or null
  const uint8_t* key_mask1;
  const uint8_t* mask_row;   // row of the general mask or null
  int64_t mask_stride_s;
  int64_t lo, hi;            // causal/window bounds, lo >= hi: none
  uint64_t drop_base;        // flat index of (b, u, t, 0) in [B,Hq,T,S]
};

HWY_INLINE bool Allowed(const RowContext& rc, int64_t s) {
  return (!rc.key_mask0 || rc.key_mask0[s]) &&
         (!rc.key_mask1 || rc.key_mask1[s]) &&
         (!rc.mask_row || rc.mask_row[s * rc.mask_stride_s]);
}

// Multiplier dropout gives probability s: 0 or 1 / (1 - rate).
HWY_INLINE float DropWeight(const AttentionParams& p, const RowContext& rc,
                            int64_t s) {
  if (!p.apply_dropout) return 1.0f;
  if (p.dropout_rate >= 1.0f) return 0.0f;
  const uint64_t index = rc.drop_base + static_cast<uint64_t>(s);
  const bool keep = p.keep_mask ? p.keep_mask[index] != 0
                                : DropoutKeep(p.seed, index, p.dropout_rate);
  return keep ? 1.0f / (1.0f - p.dropout_rate) : 0.0f;
}

HWY_INLINE void StoreScore(const AttentionParams& p, uint64_t index,
                           float value) {
  if (p.scores_type == ElemType::kF16) {
    static_cast<uint16_t*>(p.scores)[index] = FloatToHalf(value);
  } else {
    static_cast<float*>(p.scores)[index] = value;
  }
}

template <typename T>
void AttendRow(const AttentionParams& p, int64_t b, int64_t u, int64_t t) {
  const hn::ScalableTag<float> df;
  const int64_t S = p.kv_len;
  const size_t dim = static_cast<size_t>(p.head_dim);
  const int64_t g = u / (p.q_heads / p.kv_heads);
  const T* q = static_cast<const T*>(p.q) + b * p.q_stride_b +
               t * p.q_stride_t + u * p.q_stride_h;
  const T* k0 = static_cast<const T*>(p.k) + b * p.k_stride_b +
                g * p.k_stride_h;
  const T* v0 = static_cast<const T*>(p.v) + b * p.v_stride_b +
                g * p.v_stride_h;
  float* acc = p.out + b * p.out_stride_b + t * p.out_stride_t +
               u * p.out_stride_h;

  RowContext rc;
  rc.key_mask0 = p.key_mask0 ? p.key_mask0 + b * S : nullptr;
  rc.key_mask1 = p.key_mask1 ? p.key_mask1 + b * S : nullptr;
  rc.mask_row = p.mask ? p.mask + b * p.mask_stride_b + u * p.mask_stride_h +
                             t * p.mask_stride_t
                       : nullptr;
  rc.mask_stride_s = p.mask_stride_s;
  rc.lo = 0;
  rc.hi = S;
  const int64_t pos = t + p.position_offset;
  if (p.causal && pos + 1 < rc.hi) rc.hi = pos + 1;
  if (p.sliding_window > 0) {
    if (pos - p.sliding_window + 1 > rc.lo) rc.lo = pos - p.sliding_window + 1;
    if (pos + p.sliding_window < rc.hi) rc.hi = pos + p.sliding_window;
  }
  if (p.query_mask && !p.query_mask[b * p.q_len + t]) rc.hi = rc.lo;
  rc.drop_base = static_cast<uint64_t>(((b * p.q_heads + u) * p.q_len + t) * S);

  ZeroRow(df, acc, dim);
  // Pass 1 (the only pass without scores): online softmax.
  const bool fused = p.scores == nullptr;
  float m = 0.0f, l = 0.0f;
  bool any = false;
  for (int64_t s = rc.lo; s < rc.hi; ++s) {
    if (!Allowed(rc, s)) continue;
    const float x = p.scale * DotRow(df, q, k0 + s * p.k_stride_s, dim);
    if (!any) {
      any = true;
      m = x;
      l = 1.0f;
      if (fused) Accumulate(df, acc, DropWeight(p, rc, s), v0 + s * p.v_stride_s, dim);
    } else if (x > m) {
      const float alpha = expf(m - x);
      l = l * alpha + 1.0f;
      m = x;
      if (fused) {
        ScaleAccumulate(df, acc, alpha, DropWeight(p, rc, s),
                        v0 + s * p.v_stride_s, dim);
      }
    } else {
      const float e = expf(x - m);
      l += e;
      if (fused) {
        const float w = e * DropWeight(p, rc, s);
        if (w != 0.0f) Accumulate(df, acc, w, v0 + s * p.v_stride_s, dim);
      }
    }
  }

  const float uniform = 1.0f / static_cast<float>(S);
  if (fused) {
    if (any) {
      ScaleRow(df, acc, 1.0f / l, dim);
    } else if (p.fully_masked_uniform) {
      for (int64_t s = 0; s < S; ++s) {
        const float w = DropWeight(p, rc, s);
        if (w != 0.0f) Accumulate(df, acc, w, v0 + s * p.v_stride_s, dim);
      }
      ScaleRow(df, acc, uniform, dim);
    }
    return;
  }

  // Pass 2: normalised probabilities, written out and accumulated.
  const float inv_l = any ? 1.0f / l : 0.0f;
  for (int64_t s = 0; s < S; ++s) {
    float prob = 0.0f;
    if (any) {
      if (s >= rc.lo && s < rc.hi && Allowed(rc, s)) {
        const float x = p.scale * DotRow(df, q, k0 + s * p.k_stride_s, dim);
        prob = expf(x - m) * inv_l;
      }
    } else if (p.fully_masked_uniform) {
      prob = uniform;
    }
    StoreScore(p, rc.drop_base + static_cast<uint64_t>(s), prob);
    const float w = prob * DropWeight(p, rc, s);
    if (w != 0.0f) Accumulate(df, acc, w, v0 + s * p.v_stride_s, dim);
  }
}

// Rows are handed out in blocks of kRowsPerTask query positions of one
// (batch, head); each row depends on nothing but its inputs, so any thread
// count gives the same bits.
constexpr int64_t kRowsPerTask = 8;

struct AttentionTask {
  const AttentionParams* p;
  int64_t row_blocks;  // ceil(T / kRowsPerTask)
};

template <typename T>
void AttentionTaskFn(void* context, size_t index) {
  const AttentionTask& task = *static_cast<const AttentionTask*>(context);
  const AttentionParams& p = *task.p;
  const int64_t i = static_cast<int64_t>(index);
  const int64_t block = i % task.row_blocks;
  const int64_t bu = i / task.row_blocks;
  const int64_t u = bu % p.q_heads;
  const int64_t b = bu / p.q_heads;
  const int64_t t_end = (block + 1) * kRowsPerTask < p.q_len
                            ? (block + 1) * kRowsPerTask
                            : p.q_len;
  for (int64_t t = block * kRowsPerTask; t < t_end; ++t) {
    AttendRow<T>(p, b, u, t);
  }
}

void RunAttentionImpl(const AttentionParams& p, pthreadpool_t pool) {
  AttentionTask task;
  task.p = &p;
  task.row_blocks = (p.q_len + kRowsPerTask - 1) / kRowsPerTask;
  const size_t tasks =
      static_cast<size_t>(p.batch * p.q_heads * task.row_blocks);
  pthreadpool_task_1d_t fn = p.qkv_type == ElemType::kF16
                                 ? &AttentionTaskFn<uint16_t>
                                 : &AttentionTaskFn<float>;
  pthreadpool_parallelize_1d(pool, fn,
                             &task, tasks, 0);
}

}  // namespace HWY_NAMESPACE
}  // namespace gqa
HWY_AFTER_NAMESPACE();

#endif  // include guard per target
