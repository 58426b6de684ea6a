// Tiled streaming ("flash") attention, compiled once per Highway target.
//
// Work item = (batch b, kv head g, block of Tb query positions). Its M =
// G*Tb query rows (all G = Hq/Hkv heads of the group, row m = h*Tb + tt)
// are held transposed and pre-scaled, qt [D][Mp], so that each K/V tile of
// Bk keys is loaded once per group and serves all G heads:
//
//   s^T [Bk][Mp] = K_tile [Bk][D] . qt [D][Mp]      (4 keys x kNV vectors of
//                                                    queries per micro-tile)
//   masks -> -inf; online softmax down the key axis, vectorised over the
//   queries: m' = max(m, max_j s), alpha = exp(m - m'), p = exp(s - m'),
//   l = l*alpha + sum_j p, o *= alpha
//   o [Mp][Dp] += p [Mp][Bk] . V_tile [Bk][Dp]       (4 queries x kNV vectors
//                                                    of head dims per tile)
//   out = o / l
//
// Per tile: 2*Mp*Bk*D flops for each product; K and V tiles are converted to
// f32 once ([Bk][D] each) and the scores tile never leaves L1/L2. Keys past
// the causal/window bounds and tiles wholly masked are skipped. With scores
// requested, a first pass finds (m, l) and a second writes p = exp(s-m)/l.
// Every item is computed the same way whatever thread runs it, so results
// are bitwise identical for any thread count.

#if defined(GQA_SRC_KERNELS_FLASH_ATTENTION_INL_H_) == \
    defined(HWY_TARGET_TOGGLE)
#ifdef GQA_SRC_KERNELS_FLASH_ATTENTION_INL_H_
#undef GQA_SRC_KERNELS_FLASH_ATTENTION_INL_H_
#else
#define GQA_SRC_KERNELS_FLASH_ATTENTION_INL_H_
#endif

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <atomic>

#include <pthreadpool.h>

#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"
#include "src/attention_core.h"
#include "src/half.h"
#include "src/kernels/half_load-inl.h"

HWY_BEFORE_NAMESPACE();
namespace gqa {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Vectors per micro-tile row: 4 where the ISA has 32 vector registers.
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL || HWY_ARCH_ARM_A64
constexpr int kNV = 4;
#else
constexpr int kNV = 2;
#endif
constexpr int64_t kKeysPerTile = 128;  // Bk, a multiple of 4
constexpr int64_t kTargetRows = 128;   // aim for M = G*Tb close to this

HWY_INLINE int64_t RoundUp(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Per-slot scratch, in floats, carved from one slot of the workspace.
struct Scratch {
  float* qt;          // [D][Mp]   queries * scale, transposed
  float* kt;          // [Bk][D]   key tile (f32)
  float* vt;          // [Bk][Dp]  value tile (f32), zero padded
  float* s;           // [Bk][Mp]  scores, then probabilities
  float* o;           // [Mp][Dp]  accumulator
  float* m;           // [Mp] running max
  float* l;           // [Mp] running sum
  float* alpha;       // [Mp]
  float* pos;         // [Mp] absolute position of each row's query
  float* open;        // [Mp] 1 if the row's query is not masked out
  int64_t* q_offset;  // [Mp] element offset of each row's query vector
};

void MakeFlashPlan(const AttentionParams& p, AttentionPlan* plan) {
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int64_t group = p.q_heads / p.kv_heads;
  int64_t tb = kTargetRows / group;
  if (tb < 1) tb = 1;
  if (tb > p.q_len) tb = p.q_len;
  const int64_t rows = group * tb;
  const int64_t gran = kNV * N > 4 ? kNV * N : 4;
  plan->lanes = N;
  plan->block_positions = tb;
  plan->rows = rows;
  plan->rows_padded = RoundUp(rows, gran);
  plan->dim_padded = RoundUp(p.head_dim, kNV * N);
  plan->keys_per_tile = kKeysPerTile;
  plan->blocks_per_head = (p.q_len + tb - 1) / tb;
  plan->items = p.batch * p.kv_heads * plan->blocks_per_head;
  const int64_t D = p.head_dim, Mp = plan->rows_padded, Dp = plan->dim_padded,
                Bk = plan->keys_per_tile;
  const int64_t floats = D * Mp + Bk * D + Bk * Dp + Bk * Mp + Mp * Dp + 7 * Mp;
  // 10 regions, each rounded to 64 bytes.
  plan->slot_bytes = RoundUp(floats * 4 + 11 * 64, 64);
}

Scratch CarveSlot(const AttentionPlan& plan, int64_t head_dim,
                  unsigned char* base) {
  Scratch s;
  const int64_t D = head_dim, Mp = plan.rows_padded, Dp = plan.dim_padded,
                Bk = plan.keys_per_tile;
  unsigned char* p = base;
  auto take = [&p](int64_t floats) {
    float* r = reinterpret_cast<float*>(p);
    p += RoundUp(floats * 4, 64);
    return r;
  };
  s.qt = take(D * Mp);
  s.kt = take(Bk * D);
  s.vt = take(Bk * Dp);
  s.s = take(Bk * Mp);
  s.o = take(Mp * Dp);
  s.m = take(Mp);
  s.l = take(Mp);
  s.alpha = take(Mp);
  s.pos = take(Mp);
  s.open = take(Mp);
  s.q_offset = reinterpret_cast<int64_t*>(take(2 * Mp));
  return s;
}

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

// Converts n elements of a row to f32.
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

// s[j][m0 + ...] for 4 keys j0..j0+3 and kNV query vectors.
template <class DF>
HWY_INLINE void QkMicroTile(DF df, const float* HWY_RESTRICT qt, int64_t mp,
                            const float* HWY_RESTRICT kt, int64_t k_stride,
                            int64_t dim, float* HWY_RESTRICT s, int64_t j0,
                            int64_t m0) {
  using V = hn::Vec<DF>;
  const size_t N = hn::Lanes(df);
  V c00 = hn::Zero(df), c01 = c00, c02 = c00, c03 = c00;
  V c10 = c00, c11 = c00, c12 = c00, c13 = c00;
  V c20 = c00, c21 = c00, c22 = c00, c23 = c00;
  V c30 = c00, c31 = c00, c32 = c00, c33 = c00;
  const float* k0 = kt + (j0 + 0) * k_stride;
  const float* k1 = kt + (j0 + 1) * k_stride;
  const float* k2 = kt + (j0 + 2) * k_stride;
  const float* k3 = kt + (j0 + 3) * k_stride;
  const float* q = qt + m0;
  for (int64_t d = 0; d < dim; ++d, q += mp) {
    const V q0 = hn::LoadU(df, q);
    const V q1 = hn::LoadU(df, q + N);
    V q2 = q0, q3 = q0;
    if (kNV > 2) {
      q2 = hn::LoadU(df, q + 2 * N);
      q3 = hn::LoadU(df, q + 3 * N);
    }
    V b = hn::Set(df, k0[d]);
    c00 = hn::MulAdd(b, q0, c00);
    c01 = hn::MulAdd(b, q1, c01);
    if (kNV > 2) {
      c02 = hn::MulAdd(b, q2, c02);
      c03 = hn::MulAdd(b, q3, c03);
    }
    b = hn::Set(df, k1[d]);
    c10 = hn::MulAdd(b, q0, c10);
    c11 = hn::MulAdd(b, q1, c11);
    if (kNV > 2) {
      c12 = hn::MulAdd(b, q2, c12);
      c13 = hn::MulAdd(b, q3, c13);
    }
    b = hn::Set(df, k2[d]);
    c20 = hn::MulAdd(b, q0, c20);
    c21 = hn::MulAdd(b, q1, c21);
    if (kNV > 2) {
      c22 = hn::MulAdd(b, q2, c22);
      c23 = hn::MulAdd(b, q3, c23);
    }
    b = hn::Set(df, k3[d]);
    c30 = hn::MulAdd(b, q0, c30);
    c31 = hn::MulAdd(b, q1, c31);
    if (kNV > 2) {
      c32 = hn::MulAdd(b, q2, c32);
      c33 = hn::MulAdd(b, q3, c33);
    }
  }
  float* r0 = s + (j0 + 0) * mp + m0;
  float* r1 = s + (j0 + 1) * mp + m0;
  float* r2 = s + (j0 + 2) * mp + m0;
  float* r3 = s + (j0 + 3) * mp + m0;
  hn::StoreU(c00, df, r0);
  hn::StoreU(c01, df, r0 + N);
  hn::StoreU(c10, df, r1);
  hn::StoreU(c11, df, r1 + N);
  hn::StoreU(c20, df, r2);
  hn::StoreU(c21, df, r2 + N);
  hn::StoreU(c30, df, r3);
  hn::StoreU(c31, df, r3 + N);
  if (kNV > 2) {
    hn::StoreU(c02, df, r0 + 2 * N);
    hn::StoreU(c03, df, r0 + 3 * N);
    hn::StoreU(c12, df, r1 + 2 * N);
    hn::StoreU(c13, df, r1 + 3 * N);
    hn::StoreU(c22, df, r2 + 2 * N);
    hn::StoreU(c23, df, r2 + 3 * N);
    hn::StoreU(c32, df, r3 + 2 * N);
    hn::StoreU(c33, df, r3 + 3 * N);
  }
}

// o[m0..m0+3][d0 + ...] += p[m][j] * vt[j][d0 + ...] over the tile's keys.
template <class DF>
HWY_INLINE void PvMicroTile(DF df, const float* HWY_RESTRICT s, int64_t mp,
                            const float* HWY_RESTRICT vt, int64_t v_stride,
                            int64_t keys, float* HWY_RESTRICT o, int64_t dp,
                            int64_t m0, int64_t d0,
                            const float* HWY_RESTRICT alpha) {
  using V = hn::Vec<DF>;
  const size_t N = hn::Lanes(df);
  float* o0 = o + (m0 + 0) * dp + d0;
  float* o1 = o + (m0 + 1) * dp + d0;
  float* o2 = o + (m0 + 2) * dp + d0;
  float* o3 = o + (m0 + 3) * dp + d0;
  V c00 = hn::LoadU(df, o0), c01 = hn::LoadU(df, o0 + N), c02 = c00, c03 = c00;
  V c10 = hn::LoadU(df, o1), c11 = hn::LoadU(df, o1 + N), c12 = c00, c13 = c00;
  V c20 = hn::LoadU(df, o2), c21 = hn::LoadU(df, o2 + N), c22 = c00, c23 = c00;
  V c30 = hn::LoadU(df, o3), c31 = hn::LoadU(df, o3 + N), c32 = c00, c33 = c00;
  if (kNV > 2) {
    c02 = hn::LoadU(df, o0 + 2 * N);
    c03 = hn::LoadU(df, o0 + 3 * N);
    c12 = hn::LoadU(df, o1 + 2 * N);
    c13 = hn::LoadU(df, o1 + 3 * N);
    c22 = hn::LoadU(df, o2 + 2 * N);
    c23 = hn::LoadU(df, o2 + 3 * N);
    c32 = hn::LoadU(df, o3 + 2 * N);
    c33 = hn::LoadU(df, o3 + 3 * N);
  }
  if (alpha) {  // o *= alpha (the online-softmax rescale), in registers
    const V a0 = hn::Set(df, alpha[m0 + 0]), a1 = hn::Set(df, alpha[m0 + 1]);
    const V a2 = hn::Set(df, alpha[m0 + 2]), a3 = hn::Set(df, alpha[m0 + 3]);
    c00 = hn::Mul(c00, a0), c01 = hn::Mul(c01, a0);
    c10 = hn::Mul(c10, a1), c11 = hn::Mul(c11, a1);
    c20 = hn::Mul(c20, a2), c21 = hn::Mul(c21, a2);
    c30 = hn::Mul(c30, a3), c31 = hn::Mul(c31, a3);
    if (kNV > 2) {
      c02 = hn::Mul(c02, a0), c03 = hn::Mul(c03, a0);
      c12 = hn::Mul(c12, a1), c13 = hn::Mul(c13, a1);
      c22 = hn::Mul(c22, a2), c23 = hn::Mul(c23, a2);
      c32 = hn::Mul(c32, a3), c33 = hn::Mul(c33, a3);
    }
  }
  const float* v = vt + d0;
  const float* pr = s + m0;
  for (int64_t j = 0; j < keys; ++j, v += v_stride, pr += mp) {
    const V v0 = hn::LoadU(df, v);
    const V v1 = hn::LoadU(df, v + N);
    V v2 = v0, v3 = v0;
    if (kNV > 2) {
      v2 = hn::LoadU(df, v + 2 * N);
      v3 = hn::LoadU(df, v + 3 * N);
    }
    V b = hn::Set(df, pr[0]);
    c00 = hn::MulAdd(b, v0, c00);
    c01 = hn::MulAdd(b, v1, c01);
    if (kNV > 2) {
      c02 = hn::MulAdd(b, v2, c02);
      c03 = hn::MulAdd(b, v3, c03);
    }
    b = hn::Set(df, pr[1]);
    c10 = hn::MulAdd(b, v0, c10);
    c11 = hn::MulAdd(b, v1, c11);
    if (kNV > 2) {
      c12 = hn::MulAdd(b, v2, c12);
      c13 = hn::MulAdd(b, v3, c13);
    }
    b = hn::Set(df, pr[2]);
    c20 = hn::MulAdd(b, v0, c20);
    c21 = hn::MulAdd(b, v1, c21);
    if (kNV > 2) {
      c22 = hn::MulAdd(b, v2, c22);
      c23 = hn::MulAdd(b, v3, c23);
    }
    b = hn::Set(df, pr[3]);
    c30 = hn::MulAdd(b, v0, c30);
    c31 = hn::MulAdd(b, v1, c31);
    if (kNV > 2) {
      c32 = hn::MulAdd(b, v2, c32);
      c33 = hn::MulAdd(b, v3, c33);
    }
  }
  hn::StoreU(c00, df, o0);
  hn::StoreU(c01, df, o0 + N);
  hn::StoreU(c10, df, o1);
  hn::StoreU(c11, df, o1 + N);
  hn::StoreU(c20, df, o2);
  hn::StoreU(c21, df, o2 + N);
  hn::StoreU(c30, df, o3);
  hn::StoreU(c31, df, o3 + N);
  if (kNV > 2) {
    hn::StoreU(c02, df, o0 + 2 * N);
    hn::StoreU(c03, df, o0 + 3 * N);
    hn::StoreU(c12, df, o1 + 2 * N);
    hn::StoreU(c13, df, o1 + 3 * N);
    hn::StoreU(c22, df, o2 + 2 * N);
    hn::StoreU(c23, df, o2 + 3 * N);
    hn::StoreU(c32, df, o3 + 2 * N);
    hn::StoreU(c33, df, o3 + 3 * N);
  }
}

// Everything about one work item that the tile loop needs.
struct Item {
  int64_t b, g, t0, tb;  // batch, kv head, first position index, positions
  int64_t kv_len;        // keys that exist for this batch (key_lengths)
  int64_t lo, hi;        // key range any row may see, [lo, hi)
  float pos_min, pos_max;
};

// Row m of the item: head u = g*G + m / tb, query index t = t0 + m % tb.
HWY_INLINE void RowOf(const AttentionParams& p, const AttentionPlan& plan,
                      const Item& it, int64_t m, int64_t* u, int64_t* t) {
  const int64_t group = p.q_heads / p.kv_heads;
  (void)plan;
  *u = it.g * group + m / it.tb;
  *t = it.t0 + m % it.tb;
}

// qt[d][m] = scale * q[row m][d]; rows past M are zero. Row-major reads of
// each query would scatter the writes: walk d outer, rows inner instead, so
// writes are contiguous and the reads hit the 64 rows' lines in L1.
template <typename T>
void PackQueries(const AttentionParams& p, const AttentionPlan& plan,
                 const Item& it, const Scratch& sc) {
  const int64_t D = p.head_dim, Mp = plan.rows_padded;
  const int64_t group = p.q_heads / p.kv_heads;
  const int64_t rows = group * it.tb;
  for (int64_t m = 0; m < Mp; ++m) {
    if (m >= rows) {
      sc.pos[m] = 3.0e38f;  // padding rows see every key: no NaN
      sc.open[m] = 1.0f;
      continue;
    }
    int64_t u, t;
    RowOf(p, plan, it, m, &u, &t);
    sc.q_offset[m] = it.b * p.q_stride_b + t * p.q_stride_t + u * p.q_stride_h;
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

template <typename T>
void PackKvTile(const AttentionParams& p, const AttentionPlan& plan,
                const Item& it, int64_t j0, int64_t keys, const Scratch& sc) {
  const hn::ScalableTag<float> df;
  const int64_t D = p.head_dim, Dp = plan.dim_padded, Bk = plan.keys_per_tile;
  const T* k =
      static_cast<const T*>(p.k) + it.b * p.k_stride_b + it.g * p.k_stride_h;
  const T* v =
      static_cast<const T*>(p.v) + it.b * p.v_stride_b + it.g * p.v_stride_h;
  for (int64_t jj = 0; jj < Bk; ++jj) {
    float* kr = sc.kt + jj * D;
    float* vr = sc.vt + jj * Dp;
    if (jj < keys) {
      RowToF32(df, k + (j0 + jj) * p.k_stride_s, kr, D);
      RowToF32(df, v + (j0 + jj) * p.v_stride_s, vr, D);
      for (int64_t d = D; d < Dp; ++d) vr[d] = 0.0f;
    } else {
      memset(kr, 0, static_cast<size_t>(D) * 4);
      memset(vr, 0, static_cast<size_t>(Dp) * 4);
    }
  }
}

HWY_INLINE bool KeyOpen(const AttentionParams& p, const Item& it, int64_t j) {
  const int64_t S = p.kv_len;
  return (!p.key_mask0 || p.key_mask0[it.b * S + j]) &&
         (!p.key_mask1 || p.key_mask1[it.b * S + j]);
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
HWY_INLINE TileView ViewKvTile(const AttentionParams& p,
                               const AttentionPlan& plan, const Item& it,
                               int64_t j0, int64_t keys, const Scratch& sc) {
  // The QK micro-tiles read rows [0, round_up(keys, 4)): in bounds when keys
  // is a multiple of 4.
  if (hwy::IsSame<T, float>() && keys % 4 == 0 &&
      plan.dim_padded == p.head_dim) {
    const float* k = static_cast<const float*>(p.k) + it.b * p.k_stride_b +
                     it.g * p.k_stride_h + j0 * p.k_stride_s;
    const float* v = static_cast<const float*>(p.v) + it.b * p.v_stride_b +
                     it.g * p.v_stride_h + j0 * p.v_stride_s;
    return TileView{k, p.k_stride_s, v, p.v_stride_s};
  }
  PackKvTile<T>(p, plan, it, j0, keys, sc);
  return TileView{sc.kt, p.head_dim, sc.vt, plan.dim_padded};
}

// Computes the scores tile s^T for keys [j0, j0 + keys) and masks it (-inf).
template <typename T>
TileView ScoreTile(const AttentionParams& p, const AttentionPlan& plan,
                   const Item& it, int64_t j0, int64_t keys,
                   const Scratch& sc) {
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int64_t Mp = plan.rows_padded, D = p.head_dim;
  const TileView view = ViewKvTile<T>(p, plan, it, j0, keys, sc);
  for (int64_t jb = 0; jb < keys; jb += 4) {
    for (int64_t m0 = 0; m0 < Mp; m0 += kNV * N) {
      QkMicroTile(df, sc.qt, Mp, view.k, view.k_stride, D, sc.s, jb, m0);
    }
  }
  const auto neg_inf = hn::Set(df, -INFINITY);
  // Keys masked per key (rows past `keys` are never read).
  for (int64_t jj = 0; jj < keys && (p.key_mask0 || p.key_mask1); ++jj) {
    if (KeyOpen(p, it, j0 + jj)) continue;
    float* row = sc.s + jj * Mp;
    for (int64_t m0 = 0; m0 < Mp; m0 += N) hn::StoreU(neg_inf, df, row + m0);
  }
  // Causal and window bounds, from positions, where the tile crosses them.
  const float j_first = static_cast<float>(j0),
              j_last = static_cast<float>(j0 + keys - 1);
  const bool ring = p.ring_capacity > 0;  // key positions not monotonic
  const bool causal_cut = p.causal && (ring || j_last > it.pos_min);
  const float w = static_cast<float>(p.sliding_window);
  const bool window_cut =
      p.sliding_window > 0 &&
      (ring || it.pos_max - j_first >= w || j_last - it.pos_min >= w);
  if (causal_cut || window_cut || p.query_mask) {
    const auto vw = hn::Set(df, w);
    const auto zero = hn::Zero(df);
    for (int64_t jj = 0; jj < keys; ++jj) {
      const auto jv =
          hn::Set(df, static_cast<float>(KeyPosition(p, it.b, j0 + jj)));
      float* row = sc.s + jj * Mp;
      for (int64_t m0 = 0; m0 < Mp; m0 += N) {
        const auto pos = hn::LoadU(df, sc.pos + m0);
        auto x = hn::LoadU(df, row + m0);
        if (causal_cut) x = hn::IfThenElse(hn::Gt(jv, pos), neg_inf, x);
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
  // General mask read in place.
  if (p.mask) {
    const int64_t rows = (p.q_heads / p.kv_heads) * it.tb;
    for (int64_t m = 0; m < rows; ++m) {
      int64_t u, t;
      RowOf(p, plan, it, m, &u, &t);
      const uint8_t* mr = p.mask + it.b * p.mask_stride_b +
                          u * p.mask_stride_h + t * p.mask_stride_t +
                          j0 * p.mask_stride_s;
      for (int64_t jj = 0; jj < keys; ++jj) {
        if (!mr[jj * p.mask_stride_s]) sc.s[jj * Mp + m] = -INFINITY;
      }
    }
  }
  return view;
}

// Dropout multipliers applied to the probabilities of the tile, in place.
void DropoutTile(const AttentionParams& p, const AttentionPlan& plan,
                 const Item& it, int64_t j0, int64_t keys, const Scratch& sc) {
  const int64_t Mp = plan.rows_padded;
  const int64_t rows = (p.q_heads / p.kv_heads) * it.tb;
  const float keep_scale =
      p.dropout_rate >= 1.0f ? 0.0f : 1.0f / (1.0f - p.dropout_rate);
  for (int64_t m = 0; m < rows; ++m) {
    int64_t u, t;
    RowOf(p, plan, it, m, &u, &t);
    const uint64_t base = static_cast<uint64_t>(
        ((it.b * p.q_heads + u) * p.q_len + t) * p.kv_len + j0);
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

// exp(x) as hn::Exp (x <= 88), but NaN stays NaN (hn::Exp returns 0 for
// it, which would hide a NaN logit) and x < -104, -inf included, gives 0.
// Same cost as hn::Exp.
template <class DF, class V>
HWY_INLINE V ExpKeepNaN(DF df, V x) {
  const V kHalf = hn::Set(df, 0.5f);
  const V kLowerBound = hn::Set(df, -104.0f);
  const V kNegZero = hn::Set(df, -0.0f);
  const V kOne = hn::Set(df, 1.0f);
  const V kOneOverLog2 = hn::Set(df, 1.442695040888963407359924681f);
  hn::impl::ExpImpl<float> impl;
  const auto q = impl.ToInt32(
      df, hn::MulAdd(x, kOneOverLog2, hn::Or(kHalf, hn::And(x, kNegZero))));
  const V y = impl.LoadExpShortRange(
      df, hn::Add(impl.ExpPoly(df, impl.ExpReduce(df, x, q)), kOne), q);
  return hn::IfThenZeroElse(hn::Lt(x, kLowerBound), y);
}

// Online-softmax step over a masked tile: updates m, l, alpha and turns s
// into p = exp(s - m). Vectorised over the queries. Non-finite logits
// propagate: a NaN logit, or +inf (exp(inf - inf)), makes l NaN for good
// (masked keys are -inf and give exactly 0). Fused (store_p), the tile's p
// is divided by the new l and alpha folds in l_old / l_new, so o stays the
// weighted mean of the V rows seen (never overflows where the result is
// finite).
void SoftmaxTile(const AttentionPlan& plan, int64_t keys, const Scratch& sc,
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
void AccumulateTile(const AttentionPlan& plan, int64_t keys,
                    const TileView& view, const Scratch& sc,
                    const float* alpha) {
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int64_t Mp = plan.rows_padded, Dp = plan.dim_padded;
  // d outer: one column chunk of the V tile stays in L1 for all rows.
  for (int64_t d0 = 0; d0 < Dp; d0 += kNV * N) {
    for (int64_t m0 = 0; m0 < Mp; m0 += 4) {
      PvMicroTile(df, sc.s, Mp, view.v, view.v_stride, keys, sc.o, Dp, m0, d0,
                  alpha);
    }
  }
}

HWY_INLINE void StoreScore(const AttentionParams& p, uint64_t index,
                           float value) {
  if (p.scores_type == ElemType::kF16) {
    static_cast<uint16_t*>(p.scores)[index] = FloatToHalf(value);
  } else {
    static_cast<float*>(p.scores)[index] = value;
  }
}

HWY_INLINE uint64_t ScoreRow(const AttentionParams& p, int64_t b, int64_t u,
                             int64_t t) {
  return static_cast<uint64_t>(((b * p.q_heads + u) * p.q_len + t) * p.kv_len);
}

template <typename TQ, typename T>
void RunItem(const AttentionParams& p, const AttentionPlan& plan, int64_t index,
             const Scratch& sc) {
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int64_t group = p.q_heads / p.kv_heads;
  const int64_t Mp = plan.rows_padded, Dp = plan.dim_padded,
                Bk = plan.keys_per_tile;
  Item it;
  const int64_t block = index % plan.blocks_per_head;
  const int64_t bg = index / plan.blocks_per_head;
  it.g = bg % p.kv_heads;
  it.b = bg / p.kv_heads;
  it.t0 = block * plan.block_positions;
  it.tb = plan.block_positions < p.q_len - it.t0 ? plan.block_positions
                                                 : p.q_len - it.t0;
  it.kv_len = p.key_lengths ? p.key_lengths[it.b] : p.kv_len;
  const int64_t first_pos = QueryPosition(p, it.b, it.t0);
  const int64_t last_pos = first_pos + it.tb - 1;
  it.pos_min = static_cast<float>(first_pos);
  it.pos_max = static_cast<float>(last_pos);
  it.lo = 0;
  it.hi = it.kv_len;
  if (p.ring_capacity > 0) {
    // Slots filled so far; positions come from KeyPosition per key.
    it.hi = it.kv_len < p.ring_capacity ? it.kv_len : p.ring_capacity;
  } else {
    if (p.causal && last_pos + 1 < it.hi) it.hi = last_pos + 1;
    if (p.sliding_window > 0) {
      if (first_pos - p.sliding_window + 1 > it.lo)
        it.lo = first_pos - p.sliding_window + 1;
      if (last_pos + p.sliding_window < it.hi)
        it.hi = last_pos + p.sliding_window;
    }
  }
  if (it.hi < it.lo) it.hi = it.lo;
  const int64_t rows = group * it.tb;

  PackQueries<TQ>(p, plan, it, sc);
  for (int64_t m = 0; m < Mp; ++m) {
    sc.m[m] = -INFINITY;
    sc.l[m] = 0.0f;
  }
  memset(sc.o, 0, static_cast<size_t>(Mp * Dp) * 4);
  const bool fused = p.scores == nullptr;
  // Tiles start at multiples of Bk from lo, so a tile's keys are contiguous.
  auto tile_keys = [&](int64_t j0) {
    return it.hi - j0 < Bk ? it.hi - j0 : Bk;
  };
  auto tile_closed = [&](int64_t j0, int64_t keys) {
    if (!p.key_mask0 && !p.key_mask1) return false;
    for (int64_t jj = 0; jj < keys; ++jj) {
      if (KeyOpen(p, it, j0 + jj)) return false;
    }
    return true;
  };

  for (int64_t j0 = it.lo; j0 < it.hi; j0 += Bk) {
    const int64_t keys = tile_keys(j0);
    if (tile_closed(j0, keys)) continue;
    const TileView view = ScoreTile<T>(p, plan, it, j0, keys, sc);
    SoftmaxTile(plan, keys, sc, fused);
    if (!fused) continue;
    if (p.apply_dropout) DropoutTile(p, plan, it, j0, keys, sc);
    AccumulateTile(plan, keys, view, sc, sc.alpha);
  }

  if (!fused) {
    // Pass 2: exact probabilities p = exp(s - m) / l, written and used.
    for (int64_t m = 0; m < rows; ++m) {
      int64_t u, t;
      RowOf(p, plan, it, m, &u, &t);
      const uint64_t row = ScoreRow(p, it.b, u, t);
      for (int64_t j = 0; j < p.kv_len; ++j) StoreScore(p, row + j, 0.0f);
    }
    // l == 0: nothing allowed; NaN l (non-finite logits) stays NaN.
    for (int64_t m = 0; m < Mp; ++m)
      sc.alpha[m] = sc.l[m] == 0.0f ? 0.0f : 1.0f / sc.l[m];
    const auto neg_inf = hn::Set(df, -INFINITY);
    for (int64_t j0 = it.lo; j0 < it.hi; j0 += Bk) {
      const int64_t keys = tile_keys(j0);
      if (tile_closed(j0, keys)) continue;
      const TileView view = ScoreTile<T>(p, plan, it, j0, keys, sc);
      for (int64_t jj = 0; jj < keys; ++jj) {
        float* row = sc.s + jj * Mp;
        for (int64_t m0 = 0; m0 < Mp; m0 += N) {
          const auto x = hn::LoadU(df, row + m0);
          const auto mm = hn::LoadU(df, sc.m + m0);
          const auto mref = hn::IfThenZeroElse(hn::Eq(mm, neg_inf), mm);
          const auto e = ExpKeepNaN(df, hn::Sub(x, mref));
          hn::StoreU(hn::Mul(e, hn::LoadU(df, sc.alpha + m0)), df, row + m0);
        }
      }
      for (int64_t m = 0; m < rows; ++m) {
        int64_t u, t;
        RowOf(p, plan, it, m, &u, &t);
        const uint64_t row =
            ScoreRow(p, it.b, u, t) + static_cast<uint64_t>(j0);
        for (int64_t jj = 0; jj < keys; ++jj)
          StoreScore(p, row + jj, sc.s[jj * Mp + m]);
      }
      if (p.apply_dropout) DropoutTile(p, plan, it, j0, keys, sc);
      AccumulateTile(plan, keys, view, sc, nullptr);
    }
  }

  // l == 0: no allowed key, or every allowed logit is -inf (q or k with
  // infinities, or scale*q.k overflowing), which is NaN (exp(-inf + inf)).
  // Rare: tell them apart by scoring the tiles again with zero queries
  // (allowed keys score 0, masked ones -inf) and mark the latter l = NaN.
  bool any_empty = false;
  for (int64_t m = 0; m < rows; ++m)
    any_empty = any_empty || (sc.l[m] == 0.0f && sc.open[m] != 0.0f);
  if (any_empty) {
    memset(sc.qt, 0, static_cast<size_t>(p.head_dim * Mp) * 4);
    for (int64_t j0 = it.lo; j0 < it.hi; j0 += Bk) {
      const int64_t keys = tile_keys(j0);
      if (tile_closed(j0, keys)) continue;
      ScoreTile<T>(p, plan, it, j0, keys, sc);
      for (int64_t m = 0; m < rows; ++m) {
        if (sc.l[m] != 0.0f || sc.open[m] == 0.0f) continue;
        for (int64_t jj = 0; jj < keys; ++jj) {
          if (sc.s[jj * Mp + m] != -INFINITY) {
            sc.l[m] = NAN;
            for (int64_t d = 0; d < Dp; ++d) sc.o[m * Dp + d] = NAN;
            if (p.scores) {
              int64_t u, t;
              RowOf(p, plan, it, m, &u, &t);
              const uint64_t row = ScoreRow(p, it.b, u, t);
              for (int64_t j = 0; j < p.kv_len; ++j)
                StoreScore(p, row + j, NAN);
            }
            break;
          }
        }
      }
    }
  }

  // Output rows: o (already divided by l), or the fully-masked policy. A
  // row is fully masked when l == 0 (no allowed key); a NaN l means
  // non-finite logits and its o is NaN.
  const int64_t D = p.head_dim, S = p.kv_len;
  const float keep_scale =
      p.dropout_rate >= 1.0f ? 0.0f : 1.0f / (1.0f - p.dropout_rate);
  for (int64_t m = 0; m < rows; ++m) {
    int64_t u, t;
    RowOf(p, plan, it, m, &u, &t);
    float* o = sc.o + m * Dp;
    if (sc.l[m] != 0.0f) {
      // o is the output already.
    } else if (p.fully_masked_uniform) {
      // Probabilities 1/S on every key, masked ones included (Keras' fused
      // path); dropout still applies to them.
      const T* v = static_cast<const T*>(p.v) + it.b * p.v_stride_b +
                   it.g * p.v_stride_h;
      const uint64_t base = ScoreRow(p, it.b, u, t);
      const float uniform = 1.0f / static_cast<float>(S);
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
        if (w == 0.0f) continue;
        const T* vr = v + j * p.v_stride_s;
        for (int64_t d = 0; d < D; ++d) o[d] += w * ToF32<T>(vr[d]);
      }
    } else {
      for (int64_t d = 0; d < D; ++d) o[d] = 0.0f;
    }
    const int64_t out_at =
        it.b * p.out_stride_b + t * p.out_stride_t + u * p.out_stride_h;
    if (p.out_type == ElemType::kF16) {
      uint16_t* out = static_cast<uint16_t*>(p.out) + out_at;
      for (int64_t d = 0; d < D; ++d) out[d] = FloatToHalf(o[d]);
    } else {
      memcpy(static_cast<float*>(p.out) + out_at, o,
             static_cast<size_t>(D) * 4);
    }
  }
}

struct RunContext {
  const AttentionParams* p;
  const AttentionPlan* plan;
  unsigned char* workspace;
  std::atomic<int64_t> next{0};
};

template <typename TQ, typename T>
void SlotTask(void* context, size_t slot) {
  RunContext& ctx = *static_cast<RunContext*>(context);
  const Scratch sc = CarveSlot(
      *ctx.plan, ctx.p->head_dim,
      ctx.workspace + slot * static_cast<size_t>(ctx.plan->slot_bytes));
  for (;;) {
    const int64_t i = ctx.next.fetch_add(1, std::memory_order_relaxed);
    if (i >= ctx.plan->items) break;
    RunItem<TQ, T>(*ctx.p, *ctx.plan, i, sc);
  }
}

void RunFlash(const AttentionParams& p, const AttentionPlan& plan,
              void* workspace, int64_t slots, pthreadpool_t pool) {
  RunContext ctx;
  ctx.p = &p;
  ctx.plan = &plan;
  ctx.workspace = static_cast<unsigned char*>(workspace) + plan.shared_bytes;
  const bool q16 = p.q_type == ElemType::kF16,
             kv16 = p.kv_type == ElemType::kF16;
  const pthreadpool_task_1d_t fn =
      q16 ? (kv16 ? &SlotTask<uint16_t, uint16_t> : &SlotTask<uint16_t, float>)
          : (kv16 ? &SlotTask<float, uint16_t> : &SlotTask<float, float>);
  if (slots > plan.items) slots = plan.items;
  pthreadpool_parallelize_1d(pool, fn, &ctx, static_cast<size_t>(slots), 0);
}

}  // namespace HWY_NAMESPACE
}  // namespace gqa
HWY_AFTER_NAMESPACE();

#endif  // include guard per target
