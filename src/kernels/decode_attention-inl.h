// Decode attention (few query rows per kv head, e.g. T = 1..4 new tokens
// against a KV cache), compiled once per Highway target. Memory-bound: each
// K/V row is read from memory once per kv group and serves all R = G*T query
// rows of the group.
//
// Work item = (batch b, kv head g, chunk c of the key axis). The key axis is
// cut into fixed chunks (a function of S only), so the partition never
// depends on the thread count. Per block of N keys (N = lanes):
//   K block -> f32 [N][Dp] (f16 converted once), for each row r:
//     part[j] = q[r] (.) k[j] summed over D/N vectors   (N lanes each)
//     scores = transpose-add of part[0..N) (ConcatEven/ConcatOdd tree:
//              3(N-1) ops for N keys), masked, online softmax in registers
//   V block -> f32 [N][Dp], acc[r] += sum_j p[r][j] v[j]
// Each item leaves (max, sum, acc) per row in the shared partials; a second
// pass merges the chunks of each (b, g) in chunk order and writes out.

#if defined(GQA_SRC_KERNELS_DECODE_ATTENTION_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef GQA_SRC_KERNELS_DECODE_ATTENTION_INL_H_
#undef GQA_SRC_KERNELS_DECODE_ATTENTION_INL_H_
#else
#define GQA_SRC_KERNELS_DECODE_ATTENTION_INL_H_
#endif

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <pthreadpool.h>

#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"
#include "src/attention_core.h"
#include "src/half.h"
#include "src/kernels/flash_attention-inl.h"

HWY_BEFORE_NAMESPACE();
namespace gqa {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

constexpr int64_t kDecodeMaxRows = 16;
constexpr int64_t kDecodeMinChunk = 512;
constexpr int64_t kDecodeMaxSplits = 16;

// True when the decode path can serve p (few rows, nothing it lacks).
HWY_INLINE bool UseDecode(const AttentionParams& p) {
  return (p.q_heads / p.kv_heads) * p.q_len <= kDecodeMaxRows && p.scores == nullptr &&
         p.mask == nullptr && !p.apply_dropout && p.query_mask == nullptr;
}

struct DecodeScratch {
  float* q;     // [R][Dp] queries * scale
  float* kb;    // [N][Dp] key block
  float* vb;    // [N][Dp] value block
  float* part;  // [N][N] per-key partial sums of one row
  float* s;     // [R][N] probabilities of the block
  float* acc;   // [R][Dp]
  float* m;     // [R]
  float* l;     // [R]
  float* keyok;   // [N] 1 if the key may be attended (before causal/window)
  float* keypos;  // [N] key positions
  float* qpos;    // [R] query positions
};

void MakeDecodePlan(const AttentionParams& p, AttentionPlan* plan) {
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int64_t R = (p.q_heads / p.kv_heads) * p.q_len;
  const int64_t Dp = RoundUp(p.head_dim, N);
  plan->decode = true;
  plan->lanes = N;
  plan->rows = R;
  plan->rows_padded = R;
  plan->dim_padded = Dp;
  plan->keys_per_tile = N;
  plan->block_positions = p.q_len;
  plan->blocks_per_head = 1;
  int64_t chunk = RoundUp((p.kv_len + kDecodeMaxSplits - 1) / kDecodeMaxSplits, N);
  if (chunk < kDecodeMinChunk) chunk = RoundUp(kDecodeMinChunk, N);
  plan->split_keys = chunk;
  plan->splits = (p.kv_len + chunk - 1) / chunk;
  plan->items = p.batch * p.kv_heads * plan->splits;
  const int64_t floats = R * Dp + 2 * N * Dp + N * N + R * N + R * Dp + 2 * R + 2 * N + R;
  plan->slot_bytes = RoundUp(floats * 4 + 11 * 64, 64);
  plan->shared_bytes = RoundUp(plan->items * R * (Dp + 2) * 4, 64);
}

DecodeScratch CarveDecodeSlot(const AttentionPlan& plan, unsigned char* base) {
  const int64_t R = plan.rows, Dp = plan.dim_padded, N = plan.lanes;
  unsigned char* p = base;
  auto take = [&p](int64_t floats) {
    float* r = reinterpret_cast<float*>(p);
    p += RoundUp(floats * 4, 64);
    return r;
  };
  DecodeScratch s;
  s.q = take(R * Dp);
  s.kb = take(N * Dp);
  s.vb = take(N * Dp);
  s.part = take(N * N);
  s.s = take(R * N);
  s.acc = take(R * Dp);
  s.m = take(R);
  s.l = take(R);
  s.keyok = take(N);
  s.keypos = take(N);
  s.qpos = take(R);
  return s;
}

// Lane j of the result = sum of the lanes of part[j] (N vectors of N lanes).
template <class DF>
HWY_INLINE hn::Vec<DF> TransposeAdd(DF df, float* HWY_RESTRICT part) {
  const size_t N = hn::Lanes(df);
#if HWY_TARGET == HWY_SCALAR
  (void)N;
  return hn::LoadU(df, part);
#else
  // In place: each level halves the vector count, pairing neighbours.
  for (size_t count = N; count > 1; count /= 2) {
    for (size_t i = 0; i < count; i += 2) {
      const auto lo = hn::LoadU(df, part + i * N);
      const auto hi = hn::LoadU(df, part + (i + 1) * N);
      const auto sum = hn::Add(hn::ConcatEven(df, hi, lo), hn::ConcatOdd(df, hi, lo));
      hn::StoreU(sum, df, part + (i / 2) * N);
    }
  }
  return hn::LoadU(df, part);
#endif
}

template <typename T>
HWY_INLINE void LoadBlock(const T* base, int64_t stride, int64_t rows, int64_t dim,
                          int64_t dim_padded, int64_t block, float* dst) {
  const hn::ScalableTag<float> df;
  for (int64_t j = 0; j < block; ++j) {
    float* row = dst + j * dim_padded;
    if (j < rows) {
      RowToF32(df, base + j * stride, row, dim);
      for (int64_t d = dim; d < dim_padded; ++d) row[d] = 0.0f;
    } else {
      memset(row, 0, static_cast<size_t>(dim_padded) * 4);
    }
  }
}

template <typename TQ, typename T>
void DecodeItem(const AttentionParams& p, const AttentionPlan& plan, int64_t index,
                const DecodeScratch& sc, float* partials) {
  const hn::ScalableTag<float> df;
  const int64_t N = plan.lanes, Dp = plan.dim_padded, D = p.head_dim, R = plan.rows;
  const int64_t group = p.q_heads / p.kv_heads;
  const int64_t split = index % plan.splits;
  const int64_t bg = index / plan.splits;
  const int64_t g = bg % p.kv_heads, b = bg / p.kv_heads;

  // Rows r = h * T + t: queries of the group's heads, scaled.
  for (int64_t r = 0; r < R; ++r) {
    const int64_t u = g * group + r / p.q_len, t = r % p.q_len;
    const TQ* q = static_cast<const TQ*>(p.q) + b * p.q_stride_b + t * p.q_stride_t +
                  u * p.q_stride_h;
    float* dst = sc.q + r * Dp;
    for (int64_t d = 0; d < D; ++d) dst[d] = ToF32<TQ>(q[d]) * p.scale;
    for (int64_t d = D; d < Dp; ++d) dst[d] = 0.0f;
    sc.qpos[r] = static_cast<float>(QueryPosition(p, b, t));
    sc.m[r] = -INFINITY;
    sc.l[r] = 0.0f;
  }
  memset(sc.acc, 0, static_cast<size_t>(R * Dp) * 4);

  // Keys of this chunk that any row may see.
  const int64_t len = p.key_lengths ? p.key_lengths[b] : p.kv_len;
  int64_t lo = split * plan.split_keys, hi = lo + plan.split_keys;
  int64_t filled = len;
  if (p.ring_capacity > 0 && filled > p.ring_capacity) filled = p.ring_capacity;
  if (hi > filled) hi = filled;
  if (p.ring_capacity == 0) {
    const int64_t first_pos = QueryPosition(p, b, 0);
    const int64_t last_pos = first_pos + p.q_len - 1;
    if (p.causal && hi > last_pos + 1) hi = last_pos + 1;
    if (p.sliding_window > 0) {
      if (lo < first_pos - p.sliding_window + 1) lo = first_pos - p.sliding_window + 1;
      if (hi > last_pos + p.sliding_window) hi = last_pos + p.sliding_window;
    }
  }
  const T* k = static_cast<const T*>(p.k) + b * p.k_stride_b + g * p.k_stride_h;
  const T* v = static_cast<const T*>(p.v) + b * p.v_stride_b + g * p.v_stride_h;
  const auto neg_inf = hn::Set(df, -INFINITY);
  const auto zero = hn::Zero(df);
  const auto window = hn::Set(df, static_cast<float>(p.sliding_window));
  const bool ring = p.ring_capacity > 0;

  for (int64_t j0 = lo; j0 < hi; j0 += N) {
    const int64_t keys = hi - j0 < N ? hi - j0 : N;
    bool any_key = false;
    for (int64_t jj = 0; jj < N; ++jj) {
      const int64_t j = j0 + jj;
      const bool ok = jj < keys && (!p.key_mask0 || p.key_mask0[b * p.kv_len + j]) &&
                      (!p.key_mask1 || p.key_mask1[b * p.kv_len + j]);
      sc.keyok[jj] = ok ? 1.0f : 0.0f;
      sc.keypos[jj] = static_cast<float>(jj < keys ? KeyPosition(p, b, j) : 0);
      any_key = any_key || ok;
    }
    if (!any_key) continue;
    LoadBlock(k + j0 * p.k_stride_s, p.k_stride_s, keys, D, Dp, N, sc.kb);
    const auto keyok = hn::LoadU(df, sc.keyok);
    const auto keypos = hn::LoadU(df, sc.keypos);
    bool any_p = false;
    for (int64_t r = 0; r < R; ++r) {
      const float* q = sc.q + r * Dp;
      for (int64_t jj = 0; jj < N; ++jj) {
        const float* kr = sc.kb + jj * Dp;
        auto sum0 = hn::Zero(df), sum1 = hn::Zero(df);
        int64_t d = 0;
        for (; d + 2 * N <= Dp; d += 2 * N) {
          sum0 = hn::MulAdd(hn::LoadU(df, q + d), hn::LoadU(df, kr + d), sum0);
          sum1 = hn::MulAdd(hn::LoadU(df, q + d + N), hn::LoadU(df, kr + d + N), sum1);
        }
        if (d < Dp) sum0 = hn::MulAdd(hn::LoadU(df, q + d), hn::LoadU(df, kr + d), sum0);
        hn::StoreU(hn::Add(sum0, sum1), df, sc.part + jj * N);
      }
      auto x = TransposeAdd(df, sc.part);
      x = hn::IfThenElse(hn::Eq(keyok, zero), neg_inf, x);
      const auto qpos = hn::Set(df, sc.qpos[r]);
      if (p.causal) x = hn::IfThenElse(hn::Gt(keypos, qpos), neg_inf, x);
      if (p.sliding_window > 0) {
        x = hn::IfThenElse(hn::Ge(hn::Sub(qpos, keypos), window), neg_inf, x);
        x = hn::IfThenElse(hn::Ge(hn::Sub(keypos, qpos), window), neg_inf, x);
      }
      (void)ring;
      const float m_old = sc.m[r];
      const float m_blk = hn::GetLane(hn::MaxOfLanes(df, x));
      const float m_new = m_blk > m_old ? m_blk : m_old;
      if (m_new == -INFINITY) {
        hn::StoreU(zero, df, sc.s + r * N);
        continue;
      }
      const auto e = hn::IfThenZeroElse(hn::Eq(x, neg_inf), hn::Exp(df, hn::Sub(x, hn::Set(df, m_new))));
      hn::StoreU(e, df, sc.s + r * N);
      const float alpha = m_old == -INFINITY ? 0.0f : expf(m_old - m_new);
      sc.l[r] = sc.l[r] * alpha + hn::GetLane(hn::SumOfLanes(df, e));
      sc.m[r] = m_new;
      if (alpha != 1.0f) {
        const auto va = hn::Set(df, alpha);
        float* acc = sc.acc + r * Dp;
        for (int64_t d = 0; d < Dp; d += N) hn::StoreU(hn::Mul(hn::LoadU(df, acc + d), va), df, acc + d);
      }
      any_p = true;
    }
    if (!any_p) continue;
    LoadBlock(v + j0 * p.v_stride_s, p.v_stride_s, keys, D, Dp, N, sc.vb);
    // acc[r] += sum_j p[r][j] v[j]: 4 vectors of head dims in registers.
    for (int64_t r = 0; r < R; ++r) {
      const float* pr = sc.s + r * N;
      float* acc = sc.acc + r * Dp;
      int64_t d = 0;
      for (; d + 4 * N <= Dp; d += 4 * N) {
        auto a0 = hn::LoadU(df, acc + d), a1 = hn::LoadU(df, acc + d + N);
        auto a2 = hn::LoadU(df, acc + d + 2 * N), a3 = hn::LoadU(df, acc + d + 3 * N);
        for (int64_t jj = 0; jj < keys; ++jj) {
          const auto w = hn::Set(df, pr[jj]);
          const float* vr = sc.vb + jj * Dp + d;
          a0 = hn::MulAdd(w, hn::LoadU(df, vr), a0);
          a1 = hn::MulAdd(w, hn::LoadU(df, vr + N), a1);
          a2 = hn::MulAdd(w, hn::LoadU(df, vr + 2 * N), a2);
          a3 = hn::MulAdd(w, hn::LoadU(df, vr + 3 * N), a3);
        }
        hn::StoreU(a0, df, acc + d);
        hn::StoreU(a1, df, acc + d + N);
        hn::StoreU(a2, df, acc + d + 2 * N);
        hn::StoreU(a3, df, acc + d + 3 * N);
      }
      for (; d < Dp; d += N) {
        auto a0 = hn::LoadU(df, acc + d);
        for (int64_t jj = 0; jj < keys; ++jj) {
          a0 = hn::MulAdd(hn::Set(df, pr[jj]), hn::LoadU(df, sc.vb + jj * Dp + d), a0);
        }
        hn::StoreU(a0, df, acc + d);
      }
    }
  }
  // Partial result of this chunk: [R][m, l, acc...].
  float* out = partials + index * R * (Dp + 2);
  for (int64_t r = 0; r < R; ++r) {
    out[r * (Dp + 2) + 0] = sc.m[r];
    out[r * (Dp + 2) + 1] = sc.l[r];
    memcpy(out + r * (Dp + 2) + 2, sc.acc + r * Dp, static_cast<size_t>(Dp) * 4);
  }
}

// Merges the chunks of (b, g) in chunk order and writes the rows out.
template <typename T>
void DecodeMerge(const AttentionParams& p, const AttentionPlan& plan, int64_t bg,
                 const float* partials, float* tmp) {
  const int64_t R = plan.rows, Dp = plan.dim_padded, D = p.head_dim;
  const int64_t group = p.q_heads / p.kv_heads;
  const int64_t g = bg % p.kv_heads, b = bg / p.kv_heads;
  for (int64_t r = 0; r < R; ++r) {
    float m = -INFINITY;
    for (int64_t c = 0; c < plan.splits; ++c) {
      const float mc = partials[((bg * plan.splits + c) * R + r) * (Dp + 2)];
      if (mc > m) m = mc;
    }
    float l = 0.0f;
    for (int64_t d = 0; d < D; ++d) tmp[d] = 0.0f;
    if (m != -INFINITY) {
      for (int64_t c = 0; c < plan.splits; ++c) {
        const float* part = partials + ((bg * plan.splits + c) * R + r) * (Dp + 2);
        if (part[0] == -INFINITY) continue;
        const float w = expf(part[0] - m);
        l += part[1] * w;
        for (int64_t d = 0; d < D; ++d) tmp[d] += part[2 + d] * w;
      }
    }
    const int64_t u = g * group + r / p.q_len, t = r % p.q_len;
    if (l > 0.0f) {
      const float inv = 1.0f / l;
      for (int64_t d = 0; d < D; ++d) tmp[d] *= inv;
    } else if (p.fully_masked_uniform) {
      const T* v = static_cast<const T*>(p.v) + b * p.v_stride_b + g * p.v_stride_h;
      for (int64_t j = 0; j < p.kv_len; ++j) {
        for (int64_t d = 0; d < D; ++d) tmp[d] += ToF32<T>(v[j * p.v_stride_s + d]);
      }
      const float inv = 1.0f / static_cast<float>(p.kv_len);
      for (int64_t d = 0; d < D; ++d) tmp[d] *= inv;
    }
    const int64_t at = b * p.out_stride_b + t * p.out_stride_t + u * p.out_stride_h;
    if (p.out_type == ElemType::kF16) {
      uint16_t* o = static_cast<uint16_t*>(p.out) + at;
      for (int64_t d = 0; d < D; ++d) o[d] = FloatToHalf(tmp[d]);
    } else {
      memcpy(static_cast<float*>(p.out) + at, tmp, static_cast<size_t>(D) * 4);
    }
  }
}

struct DecodeContext {
  const AttentionParams* p;
  const AttentionPlan* plan;
  unsigned char* slots;
  float* partials;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> next_merge{0};
};

template <typename TQ, typename T>
void DecodeSlotTask(void* context, size_t slot) {
  DecodeContext& ctx = *static_cast<DecodeContext*>(context);
  const DecodeScratch sc =
      CarveDecodeSlot(*ctx.plan, ctx.slots + slot * static_cast<size_t>(ctx.plan->slot_bytes));
  for (;;) {
    const int64_t i = ctx.next.fetch_add(1, std::memory_order_relaxed);
    if (i >= ctx.plan->items) break;
    DecodeItem<TQ, T>(*ctx.p, *ctx.plan, i, sc, ctx.partials);
  }
}

template <typename T>
void DecodeMergeTask(void* context, size_t slot) {
  DecodeContext& ctx = *static_cast<DecodeContext*>(context);
  // The slot's accumulator region is free now: use it as the row buffer.
  const DecodeScratch sc =
      CarveDecodeSlot(*ctx.plan, ctx.slots + slot * static_cast<size_t>(ctx.plan->slot_bytes));
  const int64_t heads = ctx.p->batch * ctx.p->kv_heads;
  for (;;) {
    const int64_t i = ctx.next_merge.fetch_add(1, std::memory_order_relaxed);
    if (i >= heads) break;
    DecodeMerge<T>(*ctx.p, *ctx.plan, i, ctx.partials, sc.acc);
  }
}

void RunDecode(const AttentionParams& p, const AttentionPlan& plan, void* workspace,
               int64_t slots, pthreadpool_t pool) {
  DecodeContext ctx;
  ctx.p = &p;
  ctx.plan = &plan;
  ctx.partials = static_cast<float*>(workspace);
  ctx.slots = static_cast<unsigned char*>(workspace) + plan.shared_bytes;
  const bool q16 = p.q_type == ElemType::kF16, kv16 = p.kv_type == ElemType::kF16;
  const pthreadpool_task_1d_t fn = q16 ? (kv16 ? &DecodeSlotTask<uint16_t, uint16_t>
                                               : &DecodeSlotTask<uint16_t, float>)
                                       : (kv16 ? &DecodeSlotTask<float, uint16_t>
                                               : &DecodeSlotTask<float, float>);
  int64_t n = slots < plan.items ? slots : plan.items;
  pthreadpool_parallelize_1d(pool, fn, &ctx, static_cast<size_t>(n), 0);
  const int64_t heads = p.batch * p.kv_heads;
  n = slots < heads ? slots : heads;
  pthreadpool_parallelize_1d(pool, kv16 ? &DecodeMergeTask<uint16_t> : &DecodeMergeTask<float>,
                             &ctx, static_cast<size_t>(n), 0);
}

// The core's two entry points: the plan (workspace) and the run, each
// choosing the decode or the flash path the same way.
// The workspace must not depend on the call's flags (scores, masks,
// dropout pick the path), so where the decode path may serve these shapes
// the slots fit both paths and the decode partials are always reserved.
void MakePlanImpl(const AttentionParams& p, AttentionPlan* plan) {
  AttentionPlan flash;
  MakeFlashPlan(p, &flash);
  if ((p.q_heads / p.kv_heads) * p.q_len > kDecodeMaxRows) {
    *plan = flash;
    return;
  }
  AttentionPlan decode;
  MakeDecodePlan(p, &decode);
  *plan = UseDecode(p) ? decode : flash;
  plan->slot_bytes = flash.slot_bytes > decode.slot_bytes ? flash.slot_bytes : decode.slot_bytes;
  plan->shared_bytes = decode.shared_bytes;
}

void RunAttentionImpl(const AttentionParams& p, void* workspace, int64_t slots,
                      pthreadpool_t pool) {
  AttentionPlan plan;
  MakePlanImpl(p, &plan);
  if (plan.decode) {
    RunDecode(p, plan, workspace, slots, pool);
  } else {
    RunFlash(p, plan, workspace, slots, pool);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace gqa
HWY_AFTER_NAMESPACE();

#endif  // include guard per target
