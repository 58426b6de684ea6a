// The flash kernel's per-slot scratch and the steps of its tile loop,
// compiled once per Highway target: pack the queries, view or pack a K/V
// tile, score and mask it, the online-softmax step, dropout, and p.v into
// the accumulator. The loop itself and its essay: flash_attention-inl.h.

#if defined(GQA_SRC_KERNELS_FLASH_TILES_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef GQA_SRC_KERNELS_FLASH_TILES_INL_H_
#undef GQA_SRC_KERNELS_FLASH_TILES_INL_H_
#else
#define GQA_SRC_KERNELS_FLASH_TILES_INL_H_
#endif

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "hwy/highway.h"
#include "src/attention_core.h"
#include "src/kernels/attention_common-inl.h"
#include "src/kernels/flash_micro_kernels-inl.h"
#include "src/kernels/logit_options-inl.h"

HWY_BEFORE_NAMESPACE();
namespace gqa {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Per-slot scratch, carved from one slot of the workspace (CarveFlashSlot).
struct Scratch {
  float* qt;          // [D][Mp]   queries * scale, transposed
  float* kt;          // [Bk][D]   key tile (f32)
  float* vt;          // [Bk][Dp]  value tile (f32), zero padded (Dp: Dv padded)
  float* s;           // [Bk][Mp]  scores, then probabilities
  float* o;           // [Mp][Dp]  accumulator (Dp: Dv padded)
  float* m;           // [Mp] running max
  float* l;           // [Mp] running sum
  float* alpha;       // [Mp]
  float* pos;         // [Mp] absolute position of each row's query
  float* open;        // [Mp] 1 if the row's query is not masked out
  float* slope;       // [Mp] ALiBi slope of the row's head (0: padding)
  int64_t* q_offset;  // [Mp] element offset of each row's query vector
  int64_t bytes;      // size of the slot: 12 regions, each 64-byte rounded
};

// The one layout of a slot: at base nullptr, only .bytes is meaningful.
HWY_INLINE Scratch CarveFlashSlot(const KernelPlan& plan, int64_t head_dim,
                                  unsigned char* base) {
  const int64_t D = head_dim, Mp = plan.rows_padded, Dp = plan.value_dim_padded,
                Bk = plan.keys_per_tile;
  ScratchCarver c(base);
  Scratch s;
  s.qt = c.Take<float>(D * Mp);
  s.kt = c.Take<float>(Bk * D);
  s.vt = c.Take<float>(Bk * Dp);
  s.s = c.Take<float>(Bk * Mp);
  s.o = c.Take<float>(Mp * Dp);
  s.m = c.Take<float>(Mp);
  s.l = c.Take<float>(Mp);
  s.alpha = c.Take<float>(Mp);
  s.pos = c.Take<float>(Mp);
  s.open = c.Take<float>(Mp);
  s.slope = c.Take<float>(Mp);
  s.q_offset = c.Take<int64_t>(Mp);
  s.bytes = c.Bytes();
  return s;
}

// Everything about one work item that the tile loop needs.
struct Item {
  int64_t b, g, t0, tb;  // batch, kv head, first position index, positions
  int64_t lo, hi;        // key range any row may see, [lo, hi)
  float pos_min, pos_max;
};

// Row m of the item: head u = g*G + m / tb, query index t = t0 + m % tb.
HWY_INLINE void RowOf(const AttentionParams& p, const KernelPlan& plan,
                      const Item& it, int64_t m, int64_t* u, int64_t* t) {
  const int64_t group = p.q_heads / p.kv_heads;
  (void)plan;
  *u = it.g * group + m / it.tb;
  *t = it.t0 + m % it.tb;
}

// qt[d][m] = scale * q[row m][d]; rows past M are zero. Row-major reads of
// each query would scatter the writes: walk d outer, rows inner instead, so
// writes are contiguous and the reads hit the M rows' lines in L1 (M up to
// kTargetRows, rounded up to whole micro-tiles).
template <typename T>
void PackQueries(const AttentionParams& p, const KernelPlan& plan,
                 const Item& it, const Scratch& sc) {
  const int64_t D = p.head_dim, Mp = plan.rows_padded;
  const int64_t group = p.q_heads / p.kv_heads;
  const int64_t rows = group * it.tb;
  for (int64_t m = 0; m < Mp; ++m) {
    if (m >= rows) {
      sc.pos[m] = 3.0e38f;  // padding rows see every key: no NaN
      sc.open[m] = 1.0f;
      sc.slope[m] = 0.0f;
      continue;
    }
    int64_t u, t;
    RowOf(p, plan, it, m, &u, &t);
    sc.slope[m] = p.alibi_slopes ? p.alibi_slopes[u] : 0.0f;
    sc.q_offset[m] =
        it.b * p.q_stride_batch + t * p.q_stride_token + u * p.q_stride_head;
    sc.pos[m] = static_cast<float>(QueryPosition(p, it.b, t));
    sc.open[m] =
        (p.query_mask && !p.query_mask[it.b * p.q_len + t]) ? 0.0f : 1.0f;
  }
  const T* q = static_cast<const T*>(p.q);
  const float scale = p.scale;
  for (int64_t d = 0; d < D; ++d) {
    float* HWY_RESTRICT dst = sc.qt + d * Mp;
    const T* qd = q + d;
    for (int64_t m = 0; m < rows; ++m)
      dst[m] = ToF32<T>(qd[sc.q_offset[m]]) * scale;
    for (int64_t m = rows; m < Mp; ++m) dst[m] = 0.0f;
  }
}

// Blocked K/V (any element type): each row looked up in the block table
// and converted (f16) or dequantized (q8, q4) to f32. Rows past `keys` are
// zero and never read from the cache.
template <typename T>
void PackBlockedKvTile(const AttentionParams& p, const KernelPlan& plan,
                       const Item& it, int64_t j0, int64_t keys,
                       const Scratch& sc) {
  const hn::ScalableTag<float> df;
  const int64_t D = p.head_dim, Dv = ValueDim(p), Dp = plan.value_dim_padded,
                Bk = plan.keys_per_tile;
  for (int64_t jj = 0; jj < Bk; ++jj) {
    float* kr = sc.kt + jj * D;
    float* vr = sc.vt + jj * Dp;
    if (jj < keys) {
      BlockedRowToF32<T>(df, BlockedRow(p, false, it.b, j0 + jj, it.g), kr, D);
      BlockedRowToF32<T>(df, BlockedRow(p, true, it.b, j0 + jj, it.g), vr, Dv);
      for (int64_t d = Dv; d < Dp; ++d) vr[d] = 0.0f;
    } else {
      memset(kr, 0, static_cast<size_t>(D) * 4);
      memset(vr, 0, static_cast<size_t>(Dp) * 4);
    }
  }
}

template <typename T>
void PackKvTile(const AttentionParams& p, const KernelPlan& plan,
                const Item& it, int64_t j0, int64_t keys, const Scratch& sc) {
  const hn::ScalableTag<float> df;
  const int64_t D = p.head_dim, Dv = ValueDim(p), Dp = plan.value_dim_padded,
                Bk = plan.keys_per_tile;
  const T* k = static_cast<const T*>(p.k) + it.b * p.k_stride_batch +
               it.g * p.k_stride_head;
  const T* v = static_cast<const T*>(p.v) + it.b * p.v_stride_batch +
               it.g * p.v_stride_head;
  for (int64_t jj = 0; jj < Bk; ++jj) {
    float* kr = sc.kt + jj * D;
    float* vr = sc.vt + jj * Dp;
    if (jj < keys) {
      RowToF32(df, k + (j0 + jj) * p.k_stride_token, kr, D);
      RowToF32(df, v + (j0 + jj) * p.v_stride_token, vr, Dv);
      for (int64_t d = Dv; d < Dp; ++d) vr[d] = 0.0f;
    } else {
      memset(kr, 0, static_cast<size_t>(D) * 4);
      memset(vr, 0, static_cast<size_t>(Dp) * 4);
    }
  }
}

// Where the K and V rows of a tile are read from: the caller's f32 tensors
// in place when the tile is full and D fills whole micro-tiles, else the
// converted, zero-padded copies in the scratch.
struct TileView {
  const float* k;
  int64_t k_stride;
  const float* v;
  int64_t v_stride;
};

template <typename T>
HWY_INLINE TileView ViewKvTile(const AttentionParams& p, const KernelPlan& plan,
                               const Item& it, int64_t j0, int64_t keys,
                               const Scratch& sc) {
  // Blocked K/V: always packed to f32, row by row through the table.
  if (IsKvCodes<T>() || p.kv_blocks.pool != nullptr) {
    PackBlockedKvTile<T>(p, plan, it, j0, keys, sc);
    return TileView{sc.kt, p.head_dim, sc.vt, plan.value_dim_padded};
  }
  // The QK micro-tiles read rows [0, round_up(keys, 4)): in bounds when keys
  // is a multiple of 4.
  if (hwy::IsSame<T, float>() && keys % 4 == 0 &&
      plan.value_dim_padded == ValueDim(p)) {
    const float* k = static_cast<const float*>(p.k) + it.b * p.k_stride_batch +
                     it.g * p.k_stride_head + j0 * p.k_stride_token;
    const float* v = static_cast<const float*>(p.v) + it.b * p.v_stride_batch +
                     it.g * p.v_stride_head + j0 * p.v_stride_token;
    return TileView{k, p.k_stride_token, v, p.v_stride_token};
  }
  if constexpr (!IsKvCodes<T>()) PackKvTile<T>(p, plan, it, j0, keys, sc);
  return TileView{sc.kt, p.head_dim, sc.vt, plan.value_dim_padded};
}

// Softcap, ALiBi and the additive bias on the logits of the tile, in the
// spec's order (before the masks). Padding rows have slope 0 and no bias.
void LogitOptionsTile(const AttentionParams& p, const KernelPlan& plan,
                      const Item& it, int64_t j0, int64_t keys,
                      const Scratch& sc) {
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int64_t Mp = plan.rows_padded;
  if (p.softcap > 0.0f || p.alibi_slopes) {
    const SoftcapConsts cap = MakeSoftcap(p.softcap);
    for (int64_t jj = 0; jj < keys; ++jj) {
      const auto kpos =
          hn::Set(df, static_cast<float>(KeyPosition(p, it.b, j0 + jj)));
      float* row = sc.s + jj * Mp;
      for (int64_t m0 = 0; m0 < Mp; m0 += N) {
        auto x = hn::LoadU(df, row + m0);
        if (p.softcap > 0.0f) x = Softcap(df, x, cap);
        if (p.alibi_slopes) {
          x = AlibiLogits(x, hn::LoadU(df, sc.slope + m0),
                          hn::LoadU(df, sc.pos + m0), kpos);
        }
        hn::StoreU(x, df, row + m0);
      }
    }
  }
  if (p.bias) {
    const int64_t rows = (p.q_heads / p.kv_heads) * it.tb;
    for (int64_t m = 0; m < rows; ++m) {
      int64_t u, t;
      RowOf(p, plan, it, m, &u, &t);
      const float* br = p.bias + it.b * p.bias_stride_batch +
                        u * p.bias_stride_head + t * p.bias_stride_query +
                        j0 * p.bias_stride_key;
      for (int64_t jj = 0; jj < keys; ++jj)
        sc.s[jj * Mp + m] += br[jj * p.bias_stride_key];
    }
  }
}

// Computes the scores tile s^T for keys [j0, j0 + keys) and masks it (-inf).
template <typename T>
TileView ScoreTile(const AttentionParams& p, const KernelPlan& plan,
                   const Item& it, int64_t j0, int64_t keys,
                   const Scratch& sc) {
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int64_t Mp = plan.rows_padded, D = p.head_dim;
  const TileView view = ViewKvTile<T>(p, plan, it, j0, keys, sc);
  for (int64_t jb = 0; jb < keys; jb += 4) {
    for (int64_t m0 = 0; m0 < Mp; m0 += kFlashTileVectors * N) {
      QkMicroTile(df, sc.qt, Mp, view.k, view.k_stride, D, sc.s, jb, m0);
    }
  }
  if (p.softcap > 0.0f || p.alibi_slopes || p.bias)
    LogitOptionsTile(p, plan, it, j0, keys, sc);
  const auto neg_inf = hn::Set(df, -INFINITY);
  // Keys masked per key (rows past `keys` are never read).
  for (int64_t jj = 0; jj < keys && (p.key_mask || p.key_mask2); ++jj) {
    if (KeyOpen(p, it.b, j0 + jj)) continue;
    float* row = sc.s + jj * Mp;
    for (int64_t m0 = 0; m0 < Mp; m0 += N) hn::StoreU(neg_inf, df, row + m0);
  }
  // Causal and window bounds, from positions, where the tile crosses them.
  const float j_first = static_cast<float>(j0),
              j_last = static_cast<float>(j0 + keys - 1);
  const bool ring = p.ring_capacity > 0;  // key positions not monotonic
  // Tree mask: keys from the first query's position on are drafts, masked
  // by the tree instead of causally (below).
  const int64_t draft0 = p.tree_mask ? QueryPosition(p, it.b, 0) : INT64_MAX;
  const bool tree_cut = p.tree_mask && (ring || j0 + keys - 1 >= draft0);
  const bool causal_cut = p.causal && (ring || j_last > it.pos_min);
  const float w = static_cast<float>(p.sliding_window);
  const bool window_cut =
      p.sliding_window > 0 &&
      (ring || it.pos_max - j_first >= w || j_last - it.pos_min >= w);
  if (causal_cut || window_cut || p.query_mask) {
    const auto vw = hn::Set(df, w);
    const auto zero = hn::Zero(df);
    for (int64_t jj = 0; jj < keys; ++jj) {
      const int64_t kpos = KeyPosition(p, it.b, j0 + jj);
      const auto jv = hn::Set(df, static_cast<float>(kpos));
      const bool causal_key = causal_cut && kpos < draft0;
      float* row = sc.s + jj * Mp;
      for (int64_t m0 = 0; m0 < Mp; m0 += N) {
        const auto pos = hn::LoadU(df, sc.pos + m0);
        auto x = hn::LoadU(df, row + m0);
        if (causal_key) x = hn::IfThenElse(hn::Gt(jv, pos), neg_inf, x);
        if (window_cut) {
          x = hn::IfThenElse(hn::Ge(hn::Sub(pos, jv), vw), neg_inf, x);
          x = hn::IfThenElse(hn::Ge(hn::Sub(jv, pos), vw), neg_inf, x);
        }
        if (p.query_mask)
          x = hn::IfThenElse(hn::Eq(hn::LoadU(df, sc.open + m0), zero), neg_inf,
                             x);
        hn::StoreU(x, df, row + m0);
      }
    }
  }
  // Drafts: query t sees draft d where the tree says so.
  if (tree_cut) {
    const int64_t rows = (p.q_heads / p.kv_heads) * it.tb;
    for (int64_t jj = 0; jj < keys; ++jj) {
      const int64_t d = KeyPosition(p, it.b, j0 + jj) - draft0;
      if (d < 0) continue;
      for (int64_t m = 0; m < rows; ++m) {
        int64_t u, t;
        RowOf(p, plan, it, m, &u, &t);
        if (!TreeOpen(p, it.b, t, d)) sc.s[jj * Mp + m] = -INFINITY;
      }
    }
  }
  // General mask read in place.
  if (p.mask) {
    const int64_t rows = (p.q_heads / p.kv_heads) * it.tb;
    for (int64_t m = 0; m < rows; ++m) {
      int64_t u, t;
      RowOf(p, plan, it, m, &u, &t);
      const uint8_t* mr = p.mask + it.b * p.mask_stride_batch +
                          u * p.mask_stride_head + t * p.mask_stride_query +
                          j0 * p.mask_stride_key;
      for (int64_t jj = 0; jj < keys; ++jj) {
        if (!mr[jj * p.mask_stride_key]) sc.s[jj * Mp + m] = -INFINITY;
      }
    }
  }
  return view;
}

// Dropout multipliers applied to the probabilities of the tile, in place.
void DropoutTile(const AttentionParams& p, const KernelPlan& plan,
                 const Item& it, int64_t j0, int64_t keys, const Scratch& sc) {
  const int64_t Mp = plan.rows_padded;
  const int64_t rows = (p.q_heads / p.kv_heads) * it.tb;
  const float keep_scale =
      p.dropout_rate >= 1.0f ? 0.0f : 1.0f / (1.0f - p.dropout_rate);
  for (int64_t m = 0; m < rows; ++m) {
    int64_t u, t;
    RowOf(p, plan, it, m, &u, &t);
    const uint64_t base = ScoreRow(p, it.b, u, t) + static_cast<uint64_t>(j0);
    for (int64_t jj = 0; jj < keys; ++jj) {
      float& x = sc.s[jj * Mp + m];
      if (x == 0.0f) continue;
      const bool keep = p.keep_mask
                            ? p.keep_mask[base + jj] != 0
                            : DropoutKeep(p.seed, base + jj, p.dropout_rate);
      x = keep ? x * keep_scale : 0.0f;
    }
  }
}

// Online-softmax step over a masked tile: updates m, l, alpha and turns s
// into p = exp(s - m). Vectorised over the queries. Non-finite logits
// propagate: a NaN logit, or +inf (exp(inf - inf)), makes l NaN for good
// (masked keys are -inf and give exactly 0). Fused (store_p), the tile's p
// is divided by the new l and alpha folds in l_old / l_new, so o stays the
// weighted mean of the V rows seen (never overflows where the result is
// finite).
void SoftmaxTile(const KernelPlan& plan, int64_t keys, const Scratch& sc,
                 bool store_p) {
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int64_t Mp = plan.rows_padded;
  const auto neg_inf = hn::Set(df, -INFINITY);
  const auto zero = hn::Zero(df);
  const auto one = hn::Set(df, 1.0f);
  for (int64_t m0 = 0; m0 < Mp; m0 += N) {
    const auto m_old = hn::LoadU(df, sc.m + m0);
    auto tile_max = neg_inf;
    for (int64_t jj = 0; jj < keys; ++jj) {
      tile_max = hn::Max(tile_max, hn::LoadU(df, sc.s + jj * Mp + m0));
    }
    const auto m_new = hn::Max(m_old, tile_max);
    // Rows with nothing allowed yet keep m = -inf; subtract 0 there.
    const auto m_ref = hn::IfThenZeroElse(hn::Eq(m_new, neg_inf), m_new);
    const auto alpha = hn::IfThenZeroElse(
        hn::Eq(m_old, neg_inf), ExpKeepNaN(df, hn::Sub(m_old, m_ref)));
    auto sum = hn::Zero(df);
    for (int64_t jj = 0; jj < keys; ++jj) {
      float* row = sc.s + jj * Mp + m0;
      const auto e = ExpKeepNaN(df, hn::Sub(hn::LoadU(df, row), m_ref));
      sum = hn::Add(sum, e);
      if (store_p) hn::StoreU(e, df, row);
    }
    const auto l_old = hn::LoadU(df, sc.l + m0);
    const auto l_new = hn::MulAdd(l_old, alpha, sum);
    hn::StoreU(m_new, df, sc.m + m0);
    hn::StoreU(l_new, df, sc.l + m0);
    if (store_p) {
      // l_new is 0 only while nothing is allowed (then p and alpha are 0).
      const auto inv =
          hn::IfThenZeroElse(hn::Eq(l_new, zero), hn::Div(one, l_new));
      for (int64_t jj = 0; jj < keys; ++jj) {
        float* row = sc.s + jj * Mp + m0;
        hn::StoreU(hn::Mul(hn::LoadU(df, row), inv), df, row);
      }
      hn::StoreU(hn::Mul(alpha, hn::Mul(l_old, inv)), df, sc.alpha + m0);
    } else {
      hn::StoreU(alpha, df, sc.alpha + m0);
    }
  }
}

// o = o * alpha + p . V (alpha null: no rescale).
void AccumulateTile(const KernelPlan& plan, int64_t keys, const TileView& view,
                    const Scratch& sc, const float* alpha) {
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int64_t Mp = plan.rows_padded, Dp = plan.value_dim_padded;
  // d outer: one column chunk of the V tile stays in L1 for all rows.
  for (int64_t d0 = 0; d0 < Dp; d0 += kFlashTileVectors * N) {
    for (int64_t m0 = 0; m0 < Mp; m0 += 4) {
      PvMicroTile(df, sc.s, Mp, view.v, view.v_stride, keys, sc.o, Dp, m0, d0,
                  alpha);
    }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace gqa
HWY_AFTER_NAMESPACE();

#endif  // include guard per target
