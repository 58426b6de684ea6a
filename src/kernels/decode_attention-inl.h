// Decode attention (few query rows per kv head, e.g. T = 1..4 new tokens
// against a KV cache), compiled once per Highway target. Each K/V row is
// read from memory once and serves all G*T query rows of its kv group.
//
// Work item = (batch b, chunk c of the key axis), all kv heads: the key axis
// is cut into fixed chunks (a function of S only), so the partition never
// depends on the thread count. Per block of Bk keys:
//   q.k: key by key, head by head: the cache is read front to back, the one
//        order the hardware prefetchers follow at full speed (measured: 4
//        keys side by side or head-major order lose up to half the
//        bandwidth). One key row against a tile of up to 4 query rows gives
//        4 partial-sum vectors; two transpose-add levels fold them into one
//        "quad" vector; the rest of the tree runs per key over all tiles, so
//        a block's scores are [Bk][slots] with the rows in the lanes.
//   softmax: online, elementwise across keys (max, exp, sum per slot
//        vector): no horizontal reductions, no per-row serial chain.
//   p.v: head by head over the block, 4 rows x 4 vectors of accumulators in
//        registers (rescaled by alpha on load), V rows prefetched in memory
//        order during q.k.
// Each item leaves (max, sum, acc) per row in the shared partials; a second
// pass merges the chunks of each batch in chunk order and writes out.

#if defined(GQA_SRC_KERNELS_DECODE_ATTENTION_INL_H_) == \
    defined(HWY_TARGET_TOGGLE)
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

#include "hwy/cache_control.h"
#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"
#include "src/attention_core.h"
#include "src/half.h"
#include "src/kernels/half_load-inl.h"
#include "src/kernels/flash_attention-inl.h"

HWY_BEFORE_NAMESPACE();
namespace gqa {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

constexpr int64_t kDecodeMaxRows = 16;
constexpr int64_t kDecodeMinChunk = 512;
constexpr int64_t kDecodeMaxSplits = 16;
// Keys per block: at most this many, and fewer where the q.k partial sums
// of a block ([Bk][quads][N]) would pass kDecodePartFloats.
constexpr int64_t kDecodeBlockKeys = 64;
constexpr int64_t kDecodePartFloats = 4096;
// Rows per q.k tile (one key row against up to 4 query rows: the 4 partial
// vectors fold into one "quad" vector) and per p.v register tile.
constexpr int64_t kDecodeTileRows = 4;
// p.v passes: up to 8 rows x 2 vectors (or 4 x 4) of accumulators where
// there are 32 vector registers, 2 x 4 where there are 16.
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL || HWY_ARCH_ARM_A64
constexpr int kDecodePvRows = 8;
#else
constexpr int kDecodePvRows = 2;
#endif

// True when the decode path can serve p (few rows, nothing it lacks).
HWY_INLINE bool UseDecode(const AttentionParams& p) {
  return (p.q_heads / p.kv_heads) * p.q_len <= kDecodeMaxRows &&
         p.scores == nullptr && p.mask == nullptr && !p.apply_dropout &&
         p.query_mask == nullptr;
}

// Score slots: the rows of each kv head are cut into tiles of up to 4; tile
// t owns slots [4t, 4t + 4) (slots past the tile's rows are padding). A
// block's scores are kept key-major, [Bk][slots], so the online softmax runs
// across keys with rows in the lanes: no horizontal reductions.
struct DecodeShape {
  int64_t heads;           // Hkv
  int64_t tiles_per_head;  // ceil(G*T / 4)
  int64_t tiles;           // Hkv * tiles_per_head
  int64_t quads_padded;    // tiles rounded up to whole vectors of slots
  int64_t slots;           // 4 * quads_padded, a multiple of N
  int64_t quad_floats;     // max(N, 4): floats of one stored quad
};

HWY_INLINE DecodeShape MakeDecodeShape(const AttentionParams& p, int64_t N) {
  DecodeShape s;
  const int64_t rows_per_group = (p.q_heads / p.kv_heads) * p.q_len;
  s.heads = p.kv_heads;
  s.tiles_per_head = (rows_per_group + kDecodeTileRows - 1) / kDecodeTileRows;
  s.tiles = p.kv_heads * s.tiles_per_head;
  const int64_t quads_per_vector = N >= 4 ? N / 4 : 1;
  s.quads_padded = RoundUp(s.tiles, quads_per_vector);
  s.slots = 4 * s.quads_padded;
  s.quad_floats = N > 4 ? N : 4;
  return s;
}

struct DecodeScratch {
  float* q;       // [R][Dp] queries * scale, R = Hq*T rows (row = u*T + t)
  float* kb;      // [Bk][Hkv][Dp] key block, f32 (packed path only)
  float* vb;      // [Bk][Hkv][Dp] value block (packed path only)
  float* part;    // [Bk][quads_padded][quad_floats] q.k quads
  float* s;       // [Bk][slots] scores, then probabilities
  float* acc;     // [R][Dp]
  float* m;       // [slots] running max
  float* l;       // [slots] running sum
  float* scale;   // [slots] acc holds sum p v / scale (scale >= l)
  float* alpha;   // [slots] rescale of acc for the current block
  float* qpos;    // [slots] query position of the slot's row
  float* keyok;   // [Bk] 1 if the key may be attended (before causal/window)
  float* keypos;  // [Bk] key positions
};

// Work item = (batch, chunk of keys) over all kv heads: the K/V rows of a
// key are contiguous across heads ([S][Hkv][D]), so an item reads its range
// of the cache front to back, the order the hardware prefetchers follow.
void MakeDecodePlan(const AttentionParams& p, AttentionPlan* plan) {
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int64_t R = p.q_heads * p.q_len;
  const int64_t Dp = RoundUp(p.head_dim, N);
  const DecodeShape sh = MakeDecodeShape(p, N);
  plan->decode = true;
  plan->lanes = N;
  plan->rows = R;
  plan->rows_padded = R;
  plan->dim_padded = Dp;
  int64_t Bk = kDecodePartFloats / (sh.quads_padded * sh.quad_floats) / 4 * 4;
  if (Bk > kDecodeBlockKeys) Bk = kDecodeBlockKeys;
  if (Bk < 4) Bk = 4;
  plan->keys_per_tile = Bk;
  plan->block_positions = p.q_len;
  plan->blocks_per_head = 1;
  int64_t chunk =
      RoundUp((p.kv_len + kDecodeMaxSplits - 1) / kDecodeMaxSplits, Bk);
  if (chunk < kDecodeMinChunk) chunk = RoundUp(kDecodeMinChunk, Bk);
  plan->split_keys = chunk;
  plan->splits = (p.kv_len + chunk - 1) / chunk;
  plan->items = p.batch * plan->splits;
  const int64_t H = p.kv_heads;
  const int64_t floats = R * Dp + 2 * Bk * H * Dp +
                         Bk * sh.quads_padded * sh.quad_floats + Bk * sh.slots +
                         R * Dp + 5 * sh.slots + 2 * Bk;
  plan->slot_bytes = RoundUp(floats * 4 + 13 * 64, 64);
  plan->shared_bytes = RoundUp(plan->items * R * (Dp + 2) * 4, 64);
}

DecodeScratch CarveDecodeSlot(const AttentionParams& p,
                              const AttentionPlan& plan, unsigned char* base) {
  const int64_t R = plan.rows, Dp = plan.dim_padded, N = plan.lanes;
  const int64_t Bk = plan.keys_per_tile;
  const DecodeShape sh = MakeDecodeShape(p, N);
  unsigned char* ptr = base;
  auto take = [&ptr](int64_t floats) {
    float* r = reinterpret_cast<float*>(ptr);
    ptr += RoundUp(floats * 4, 64);
    return r;
  };
  DecodeScratch s;
  s.q = take(R * Dp);
  s.kb = take(Bk * p.kv_heads * Dp);
  s.vb = take(Bk * p.kv_heads * Dp);
  s.part = take(Bk * sh.quads_padded * sh.quad_floats);
  s.s = take(Bk * sh.slots);
  s.acc = take(R * Dp);
  s.m = take(sh.slots);
  s.l = take(sh.slots);
  s.scale = take(sh.slots);
  s.alpha = take(sh.slots);
  s.qpos = take(sh.slots);
  s.keyok = take(Bk);
  s.keypos = take(Bk);
  return s;
}

// N lanes of f32 from a K/V row: f32 as is, f16 widened.
template <class DF>
HWY_INLINE hn::Vec<DF> LoadRow(DF df, const float* HWY_RESTRICT p) {
  return hn::LoadU(df, p);
}
template <class DF>
HWY_INLINE hn::Vec<DF> LoadRow(DF df, const uint16_t* HWY_RESTRICT p) {
  return LoadF16AsF32(df, p);  // exact for Inf and NaN on every target
}

// Folds 4 partial-sum vectors (one per row) by two levels of a
// transpose-add tree (ConcatEven/Odd of neighbours) into one quad vector
// with lanes [r0 | r1 | r2 | r3], N/4 partial sums per row.
template <class DF>
HWY_INLINE void StoreQuad(DF df, hn::Vec<DF> c0, hn::Vec<DF> c1, hn::Vec<DF> c2,
                          hn::Vec<DF> c3, float* HWY_RESTRICT dst) {
#if HWY_TARGET == HWY_SCALAR
  hn::StoreU(c0, df, dst + 0);
  hn::StoreU(c1, df, dst + 1);
  hn::StoreU(c2, df, dst + 2);
  hn::StoreU(c3, df, dst + 3);
#else
  const auto ab =
      hn::Add(hn::ConcatEven(df, c1, c0), hn::ConcatOdd(df, c1, c0));
  const auto cd =
      hn::Add(hn::ConcatEven(df, c3, c2), hn::ConcatOdd(df, c3, c2));
  hn::StoreU(hn::Add(hn::ConcatEven(df, cd, ab), hn::ConcatOdd(df, cd, ab)), df,
             dst);
#endif
}

// c_r += q_r[i] * x for ROWS query rows (q_stride floats apart).
template <int ROWS, class DF, class V>
HWY_INLINE void FmaRows(DF df, const float* q, int64_t q_stride, V x, V& c0,
                        V& c1, V& c2, V& c3) {
  c0 = hn::MulAdd(hn::LoadU(df, q), x, c0);
  if (ROWS > 1) c1 = hn::MulAdd(hn::LoadU(df, q + q_stride), x, c1);
  if (ROWS > 2) c2 = hn::MulAdd(hn::LoadU(df, q + 2 * q_stride), x, c2);
  if (ROWS > 3) c3 = hn::MulAdd(hn::LoadU(df, q + 3 * q_stride), x, c3);
}

// q.k of two tiles at once (8 independent FMA chains): tile A = key row ka
// against ROWS_A query rows qa.., tile B = key row kb against ROWS_B rows
// qb.. (query rows q_stride floats apart, nv vectors each). The two tiles
// are neighbours in memory order (same key row, or the next head's), so
// key rows are still read front to back. Rows past ROWS_* are zero.
// Each step over the head dim also prefetches the next pf_lines cache lines
// at pf (see DecodeBlockQk).
template <int ROWS_A, int ROWS_B, bool SAME_ROW, class DF, typename T>
HWY_INLINE void QkTilePair(DF df, const float* qa, const float* qb,
                           int64_t q_stride, const T* ka, const T* kb,
                           int64_t nv, float* dst_a, float* dst_b,
                           const unsigned char*& pf, int pf_lines) {
  using V = hn::Vec<DF>;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  V a0 = hn::Zero(df), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0,
    b3 = a0;
  for (int64_t i = 0; i < nv; ++i) {
    for (int e = 0; e < pf_lines; ++e, pf += 64) hwy::Prefetch(pf);
    const V x = LoadRow(df, ka + i * N);
    FmaRows<ROWS_A>(df, qa + i * N, q_stride, x, a0, a1, a2, a3);
    if (ROWS_B > 0) {
      const V y = SAME_ROW ? x : LoadRow(df, kb + i * N);
      FmaRows<ROWS_B>(df, qb + i * N, q_stride, y, b0, b1, b2, b3);
    }
  }
  StoreQuad(df, a0, a1, a2, a3, dst_a);
  if (ROWS_B > 0) StoreQuad(df, b0, b1, b2, b3, dst_b);
}

// Dispatch on the rows of the two tiles (0 for B: A alone).
template <class DF, typename T>
HWY_INLINE void QkTiles(DF df, int64_t rows_a, int64_t rows_b, const float* qa,
                        const float* qb, int64_t q_stride, const T* ka,
                        const T* kb, int64_t nv, float* dst_a, float* dst_b,
                        const unsigned char*& pf, int pf_lines) {
#define GQA_PAIR(A, B)                                                      \
  if (rows_a == A && rows_b == B) {                                         \
    QkTilePair<A, B, false>(df, qa, qb, q_stride, ka, kb, nv, dst_a, dst_b, \
                            pf, pf_lines);                                  \
    return;                                                                 \
  }
  // Two tiles of one head share the key row: loaded (and widened) once.
#define GQA_PAIR_SAME(A, B)                                                    \
  if (rows_a == A && rows_b == B && ka == kb) {                                \
    QkTilePair<A, B, true>(df, qa, qb, q_stride, ka, kb, nv, dst_a, dst_b, pf, \
                           pf_lines);                                          \
    return;                                                                    \
  }
  // clang-format off
  GQA_PAIR_SAME(4, 4)
  GQA_PAIR_SAME(4, 3)
  GQA_PAIR_SAME(4, 2)
  GQA_PAIR_SAME(4, 1)
#undef GQA_PAIR_SAME
  // Tiles are full (4 rows) except the last of each head.
  GQA_PAIR(4, 4)
  GQA_PAIR(4, 3)
  GQA_PAIR(4, 2)
  GQA_PAIR(4, 1)
  GQA_PAIR(4, 0)
  GQA_PAIR(3, 4)
  GQA_PAIR(2, 4)
  GQA_PAIR(1, 4)
  GQA_PAIR(3, 3)
  GQA_PAIR(2, 2)
  GQA_PAIR(1, 1)
  GQA_PAIR(3, 0)
  GQA_PAIR(2, 0)
  GQA_PAIR(1, 0)
  // clang-format on
#undef GQA_PAIR
  // Pairs are (last tile of a head, first of the next) or two full tiles,
  // so the cases above cover all; anything else goes one tile at a time.
  const float* qs[2] = {qa, qb};
  const T* ks[2] = {ka, kb};
  float* ds[2] = {dst_a, dst_b};
  const int64_t rs[2] = {rows_a, rows_b};
  for (int e = 0; e < 2; ++e) {
    switch (rs[e]) {
      case 0:
        break;
      case 1:
        QkTilePair<1, 0, false>(df, qs[e], qs[e], q_stride, ks[e], ks[e], nv,
                                ds[e], ds[e], pf, pf_lines);
        break;
      case 2:
        QkTilePair<2, 0, false>(df, qs[e], qs[e], q_stride, ks[e], ks[e], nv,
                                ds[e], ds[e], pf, pf_lines);
        break;
      case 3:
        QkTilePair<3, 0, false>(df, qs[e], qs[e], q_stride, ks[e], ks[e], nv,
                                ds[e], ds[e], pf, pf_lines);
        break;
      default:
        QkTilePair<4, 0, false>(df, qs[e], qs[e], q_stride, ks[e], ks[e], nv,
                                ds[e], ds[e], pf, pf_lines);
        break;
    }
  }
}

// Scores of slots [c*N, c*N + N) of one key from its quads: the remaining
// levels of the tree (N/4 quads -> 1 vector). Lane i = slot c*N+i.
template <class DF>
HWY_INLINE hn::Vec<DF> ReduceQuads(DF df, float* HWY_RESTRICT quads,
                                   int64_t c) {
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  if (N <= 4) return hn::LoadU(df, quads + c * N);
#if HWY_TARGET != HWY_SCALAR
  float* part = quads + c * (N / 4) * N;
  // 2 or 4 quads (256/512-bit vectors): in registers.
  if (N == 8 || N == 16) {
    auto lo = hn::LoadU(df, part);
    auto hi = hn::LoadU(df, part + N);
    if (N == 16) {
      const auto lo2 = hn::LoadU(df, part + 2 * N);
      const auto hi2 = hn::LoadU(df, part + 3 * N);
      lo = hn::Add(hn::ConcatEven(df, hi, lo), hn::ConcatOdd(df, hi, lo));
      hi = hn::Add(hn::ConcatEven(df, hi2, lo2), hn::ConcatOdd(df, hi2, lo2));
    }
    return hn::Add(hn::ConcatEven(df, hi, lo), hn::ConcatOdd(df, hi, lo));
  }
  for (int64_t count = N / 4; count > 1; count /= 2) {
    for (int64_t i = 0; i < count; i += 2) {
      const auto lo = hn::LoadU(df, part + i * N);
      const auto hi = hn::LoadU(df, part + (i + 1) * N);
      hn::StoreU(hn::Add(hn::ConcatEven(df, hi, lo), hn::ConcatOdd(df, hi, lo)),
                 df, part + (i / 2) * N);
    }
  }
  return hn::LoadU(df, part);
#else
  return hn::LoadU(df, quads + c);
#endif
}

// acc[i][d..] = acc[i][d..] * alpha[i] + sum_jj p[jj][i] * v[jj][d..] for
// ROWS rows (up to 8) and NV vectors of head dims (ROWS * NV <= 16
// accumulators): one load of each V vector serves all rows. p of row i,
// key jj at pr[jj * p_key_stride + i].
template <int ROWS, int NV, class DF, typename T>
HWY_INLINE void PvRowsFixed(DF df, const float* HWY_RESTRICT pr,
                            int64_t p_key_stride,
                            const float* HWY_RESTRICT alpha,
                            const T* HWY_RESTRICT vrow, int64_t key_stride,
                            int64_t keys, float* HWY_RESTRICT acc,
                            int64_t acc_stride, int64_t d) {
  static_assert(ROWS * NV <= 16 && ROWS <= 8 && NV <= 4, "register tile");
  using V = hn::Vec<DF>;
  const size_t N = hn::Lanes(df);
#define GQA_LOADA(r)                                              \
  V c##r##0 = hn::Zero(df), c##r##1 = c##r##0, c##r##2 = c##r##0, \
    c##r##3 = c##r##0;                                            \
  if (ROWS > r) {                                                 \
    const V a = hn::Set(df, alpha[r]);                            \
    const float* ar = acc + r * acc_stride + d;                   \
    c##r##0 = hn::Mul(hn::LoadU(df, ar), a);                      \
    if (NV > 1) c##r##1 = hn::Mul(hn::LoadU(df, ar + N), a);      \
    if (NV > 2) c##r##2 = hn::Mul(hn::LoadU(df, ar + 2 * N), a);  \
    if (NV > 3) c##r##3 = hn::Mul(hn::LoadU(df, ar + 3 * N), a);  \
  }
  // clang-format off
  GQA_LOADA(0)
  GQA_LOADA(1)
  GQA_LOADA(2)
  GQA_LOADA(3)
  GQA_LOADA(4)
  GQA_LOADA(5)
  GQA_LOADA(6)
  GQA_LOADA(7)
  // clang-format on
#undef GQA_LOADA
  for (int64_t jj = 0; jj < keys; ++jj) {
    const T* vr = vrow + jj * key_stride + d;
    const V v0 = LoadRow(df, vr);
    V v1 = v0, v2 = v0, v3 = v0;
    if (NV > 1) v1 = LoadRow(df, vr + N);
    if (NV > 2) v2 = LoadRow(df, vr + 2 * N);
    if (NV > 3) v3 = LoadRow(df, vr + 3 * N);
    const float* pk = pr + jj * p_key_stride;
#define GQA_ROW(r)                                    \
  if (ROWS > r) {                                     \
    const V w = hn::Set(df, pk[r]);                   \
    c##r##0 = hn::MulAdd(w, v0, c##r##0);             \
    if (NV > 1) c##r##1 = hn::MulAdd(w, v1, c##r##1); \
    if (NV > 2) c##r##2 = hn::MulAdd(w, v2, c##r##2); \
    if (NV > 3) c##r##3 = hn::MulAdd(w, v3, c##r##3); \
  }
    GQA_ROW(0)
    GQA_ROW(1) GQA_ROW(2) GQA_ROW(3) GQA_ROW(4) GQA_ROW(5) GQA_ROW(6) GQA_ROW(7)
#undef GQA_ROW
  }
#define GQA_STOREA(r)                                \
  if (ROWS > r) {                                    \
    float* ar = acc + r * acc_stride + d;            \
    hn::StoreU(c##r##0, df, ar);                     \
    if (NV > 1) hn::StoreU(c##r##1, df, ar + N);     \
    if (NV > 2) hn::StoreU(c##r##2, df, ar + 2 * N); \
    if (NV > 3) hn::StoreU(c##r##3, df, ar + 3 * N); \
  }
  // clang-format off
  GQA_STOREA(0)
  GQA_STOREA(1)
  GQA_STOREA(2)
  GQA_STOREA(3)
  GQA_STOREA(4)
  GQA_STOREA(5)
  GQA_STOREA(6)
  GQA_STOREA(7)
  // clang-format on
#undef GQA_STOREA
}

// All head dims: chunks of NV vectors (4 for up to 4 rows, else 2), then
// single vectors.
template <int ROWS, class DF, typename T>
HWY_INLINE void PvRowsAllDims(DF df, const float* pr, int64_t p_key_stride,
                              const float* alpha, const T* vrow,
                              int64_t key_stride, int64_t keys, float* acc,
                              int64_t Dp) {
  constexpr int kNVChunk = ROWS <= 4 ? 4 : 2;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  int64_t d = 0;
  for (; d + kNVChunk * N <= Dp; d += kNVChunk * N) {
    PvRowsFixed<ROWS, kNVChunk>(df, pr, p_key_stride, alpha, vrow, key_stride,
                                keys, acc, Dp, d);
  }
  for (; d < Dp; d += N) {
    PvRowsFixed<ROWS, 1>(df, pr, p_key_stride, alpha, vrow, key_stride, keys,
                         acc, Dp, d);
  }
}

// rows <= kDecodePvRows.
template <class DF, typename T>
HWY_INLINE void PvRows(DF df, int64_t rows, const float* pr,
                       int64_t p_key_stride, const float* alpha, const T* vrow,
                       int64_t key_stride, int64_t keys, float* acc,
                       int64_t Dp) {
#define GQA_PV_CASE(n)                                                 \
  case n:                                                              \
    PvRowsAllDims<(n <= kDecodePvRows ? n : 1)>(                       \
        df, pr, p_key_stride, alpha, vrow, key_stride, keys, acc, Dp); \
    break;
  switch (rows) {
    // clang-format off
    GQA_PV_CASE(1)
    GQA_PV_CASE(2)
    GQA_PV_CASE(3)
    GQA_PV_CASE(4)
    GQA_PV_CASE(5)
    GQA_PV_CASE(6)
    GQA_PV_CASE(7)
    // clang-format on
    default:
      PvRowsAllDims<kDecodePvRows>(df, pr, p_key_stride, alpha, vrow,
                                   key_stride, keys, acc, Dp);
  }
#undef GQA_PV_CASE
}

// Rows [0, keys) of a block, all heads, converted to f32 and zero padded:
// dst [Bk][Hkv][Dp] (the path for head dims that whole vectors do not tile).
template <typename T>
HWY_INLINE void PackBlock(const T* src, int64_t key_stride, int64_t head_stride,
                          int64_t keys, int64_t H, int64_t D, int64_t Dp,
                          float* dst) {
  const hn::ScalableTag<float> df;
  for (int64_t jj = 0; jj < keys; ++jj) {
    for (int64_t g = 0; g < H; ++g) {
      float* row = dst + (jj * H + g) * Dp;
      RowToF32(df, src + jj * key_stride + g * head_stride, row, D);
      for (int64_t d = D; d < Dp; ++d) row[d] = 0.0f;
    }
  }
}

// One block of keys [j0, j0 + keys): q.k key by key, all heads in memory
// order -> quads part[jj][tile].
template <class DF, typename TR>
HWY_INLINE void DecodeBlockQk(DF df, const DecodeScratch& sc,
                              const DecodeShape& sh, int64_t rows_per_group,
                              int64_t Dp, const TR* k, int64_t ks, int64_t kh,
                              int64_t keys, int64_t nv,
                              const unsigned char* v_prefetch,
                              int64_t v_key_bytes, int64_t v_head_bytes,
                              int64_t v_row_bytes) {
  // This block's V rows are prefetched, in memory order, for the p.v pass
  // (its reads go head by head, an order the hardware prefetchers miss).
  // Where a key's V rows are contiguous, the prefetches are spread evenly
  // over the key's q.k steps, a few lines per step (measured: ~10% faster
  // on D1 than issuing them all before the key's q.k); otherwise they go
  // head by head before it. (A prefetch past the wanted rows is harmless.)
  const int64_t qk_steps = (sh.tiles + 1) / 2 * nv;
  const int pf_lines =
      (v_prefetch != nullptr && v_head_bytes == v_row_bytes)
          ? static_cast<int>((sh.heads * v_row_bytes / 64 + qk_steps - 1) /
                             qk_steps)
          : 0;
  for (int64_t jj = 0; jj < keys; ++jj) {
    const unsigned char* pf =
        pf_lines ? v_prefetch + jj * v_key_bytes : nullptr;
    if (v_prefetch != nullptr && pf_lines == 0) {
      for (int64_t g = 0; g < sh.heads; ++g) {
        const unsigned char* vr =
            v_prefetch + jj * v_key_bytes + g * v_head_bytes;
        for (int64_t off = 0; off < v_row_bytes; off += 64)
          hwy::Prefetch(vr + off);
      }
    }
    float* quads = sc.part + jj * sh.quads_padded * sh.quad_floats;
    // Tiles in memory order (head g, then tile t), two at a time; (g, t)
    // advance by counting, not by a division per tile (D2 in L2: +3%).
    int64_t g = 0, t = 0;
    for (int64_t tile = 0; tile < sh.tiles; tile += 2) {
      int64_t rows[2] = {0, 0};
      const TR* krow[2] = {nullptr, nullptr};
      const float* q[2] = {nullptr, nullptr};
      for (int64_t e = 0; e < 2 && tile + e < sh.tiles; ++e) {
        const int64_t r0 = g * rows_per_group + t * kDecodeTileRows;
        const int64_t left = (g + 1) * rows_per_group - r0;
        rows[e] = left < kDecodeTileRows ? left : kDecodeTileRows;
        krow[e] = k + jj * ks + g * kh;
        q[e] = sc.q + r0 * Dp;
        if (++t == sh.tiles_per_head) {
          t = 0;
          ++g;
        }
      }
      QkTiles(df, rows[0], rows[1], q[0], q[1] ? q[1] : q[0], Dp, krow[0],
              krow[1] ? krow[1] : krow[0], nv, quads + tile * sh.quad_floats,
              quads + (tile + 1) * sh.quad_floats, pf, pf_lines);
    }
  }
}

template <typename TQ, typename T>
void DecodeItem(const AttentionParams& p, const AttentionPlan& plan,
                int64_t index, const DecodeScratch& sc, float* partials) {
  const hn::ScalableTag<float> df;
  using V = hn::Vec<decltype(df)>;
  const int64_t N = plan.lanes, Dp = plan.dim_padded, D = p.head_dim,
                R = plan.rows;
  const int64_t group = p.q_heads / p.kv_heads, q_len = p.q_len, H = p.kv_heads;
  const int64_t rows_per_group = group * q_len;
  const int64_t split = index % plan.splits;
  const int64_t b = index / plan.splits;
  const DecodeShape sh = MakeDecodeShape(p, N);
  const int64_t slots = sh.slots, slot_vectors = slots / N;

  // Rows r = u * T + t, queries scaled.
  for (int64_t r = 0; r < R; ++r) {
    const int64_t u = r / q_len, t = r % q_len;
    const TQ* q = static_cast<const TQ*>(p.q) + b * p.q_stride_b +
                  t * p.q_stride_t + u * p.q_stride_h;
    float* dst = sc.q + r * Dp;
    for (int64_t d = 0; d < D; ++d) dst[d] = ToF32<TQ>(q[d]) * p.scale;
    for (int64_t d = D; d < Dp; ++d) dst[d] = 0.0f;
  }
  memset(sc.acc, 0, static_cast<size_t>(R * Dp) * 4);
  // Slot i of tile (g, t) is row g * rows_per_group + 4t + i (padding slots
  // take the tile's first row: computed, never read back).
  auto slot_row = [&](int64_t slot) {
    const int64_t tile = slot / 4, i = slot % 4;
    const int64_t g = tile / sh.tiles_per_head, t = tile % sh.tiles_per_head;
    const int64_t r = g * rows_per_group + t * kDecodeTileRows;
    if (g >= H) return int64_t{-1};
    return (t * kDecodeTileRows + i < rows_per_group) ? r + i : int64_t{-1};
  };
  int64_t min_qpos = INT64_MAX, max_qpos = INT64_MIN;
  for (int64_t slot = 0; slot < slots; ++slot) {
    const int64_t r = slot_row(slot);
    const int64_t pos = QueryPosition(p, b, r >= 0 ? r % q_len : 0);
    sc.qpos[slot] = static_cast<float>(pos);
    sc.m[slot] = -INFINITY;
    sc.l[slot] = 0.0f;
    sc.scale[slot] = 0.0f;
    if (pos < min_qpos) min_qpos = pos;
    if (pos > max_qpos) max_qpos = pos;
  }
  // Padding quads (past the last tile) stay zero. (No zero-length memset
  // calls: one costs hundreds of cycles on some CPUs.)
  for (int64_t jj = 0; sh.quads_padded > sh.tiles && jj < plan.keys_per_tile;
       ++jj) {
    float* quads = sc.part + jj * sh.quads_padded * sh.quad_floats;
    memset(
        quads + sh.tiles * sh.quad_floats, 0,
        static_cast<size_t>((sh.quads_padded - sh.tiles) * sh.quad_floats) * 4);
  }

  // Keys of this chunk that any row may see.
  const int64_t len = p.key_lengths ? p.key_lengths[b] : p.kv_len;
  int64_t lo = split * plan.split_keys, hi = lo + plan.split_keys;
  int64_t filled = len;
  if (p.ring_capacity > 0 && filled > p.ring_capacity) filled = p.ring_capacity;
  if (hi > filled) hi = filled;
  if (p.ring_capacity == 0) {
    const int64_t first_pos = QueryPosition(p, b, 0);
    const int64_t last_pos = first_pos + q_len - 1;
    if (p.causal && hi > last_pos + 1) hi = last_pos + 1;
    if (p.sliding_window > 0) {
      if (lo < first_pos - p.sliding_window + 1)
        lo = first_pos - p.sliding_window + 1;
      if (hi > last_pos + p.sliding_window) hi = last_pos + p.sliding_window;
    }
  }
  const T* k = static_cast<const T*>(p.k) + b * p.k_stride_b;
  const T* v = static_cast<const T*>(p.v) + b * p.v_stride_b;
  const V neg_inf = hn::Set(df, -INFINITY);
  const V zero = hn::Zero(df);
  const V one = hn::Set(df, 1.0f);
  const V window = hn::Set(df, static_cast<float>(p.sliding_window));
  // Rows are read in place when whole vectors tile the head dim; otherwise
  // each block is packed to f32 with zero padding.
  const bool in_place = D % N == 0;
  const int64_t nv = Dp / N;
  const int64_t Bk = plan.keys_per_tile;
  const int64_t v_row_bytes = D * static_cast<int64_t>(sizeof(T));

  for (int64_t j0 = lo; j0 < hi; j0 += Bk) {
    const int64_t keys = hi - j0 < Bk ? hi - j0 : Bk;
    bool any_key = false, all_ok = true;
    int64_t min_kpos = INT64_MAX, max_kpos = INT64_MIN;
    for (int64_t jj = 0; jj < keys; ++jj) {
      const int64_t j = j0 + jj;
      const bool ok = (!p.key_mask0 || p.key_mask0[b * p.kv_len + j]) &&
                      (!p.key_mask1 || p.key_mask1[b * p.kv_len + j]);
      const int64_t pos = KeyPosition(p, b, j);
      sc.keyok[jj] = ok ? 1.0f : 0.0f;
      sc.keypos[jj] = static_cast<float>(pos);
      any_key = any_key || ok;
      all_ok = all_ok && ok;
      if (pos < min_kpos) min_kpos = pos;
      if (pos > max_kpos) max_kpos = pos;
    }
    if (!any_key) continue;
    // Position masks only where some (key, row) pair of the block may fail.
    const bool mask_causal = p.causal && max_kpos > min_qpos;
    const bool mask_window =
        p.sliding_window > 0 && (max_qpos - min_kpos >= p.sliding_window ||
                                 max_kpos - min_qpos >= p.sliding_window);
    const T* kb = k + j0 * p.k_stride_s;
    const T* vb = v + j0 * p.v_stride_s;
    if (in_place) {
      DecodeBlockQk(
          df, sc, sh, rows_per_group, Dp, kb, p.k_stride_s, p.k_stride_h, keys,
          nv, reinterpret_cast<const unsigned char*>(vb),
          p.v_stride_s * static_cast<int64_t>(sizeof(T)),
          p.v_stride_h * static_cast<int64_t>(sizeof(T)), v_row_bytes);
    } else {
      PackBlock(kb, p.k_stride_s, p.k_stride_h, keys, H, D, Dp, sc.kb);
      DecodeBlockQk(df, sc, sh, rows_per_group, Dp,
                    static_cast<const float*>(sc.kb), H * Dp, Dp, keys, nv,
                    nullptr, 0, 0, 0);
    }
    // Scores, masks and the online-softmax update, key-major with the
    // slots in the lanes: m, l and alpha are elementwise across keys.
    for (int64_t c = 0; c < slot_vectors; ++c) {
      const V qpos = hn::LoadU(df, sc.qpos + c * N);
      const V m_old = hn::LoadU(df, sc.m + c * N);
      V vmax = m_old;
      for (int64_t jj = 0; jj < keys; ++jj) {
        float* srow = sc.s + jj * slots + c * N;
        V x =
            ReduceQuads(df, sc.part + jj * sh.quads_padded * sh.quad_floats, c);
        if (!all_ok && sc.keyok[jj] == 0.0f) x = neg_inf;
        if (mask_causal || mask_window) {
          const V keypos = hn::Set(df, sc.keypos[jj]);
          if (mask_causal) x = hn::IfThenElse(hn::Gt(keypos, qpos), neg_inf, x);
          if (mask_window) {
            x = hn::IfThenElse(hn::Ge(hn::Sub(qpos, keypos), window), neg_inf,
                               x);
            x = hn::IfThenElse(hn::Ge(hn::Sub(keypos, qpos), window), neg_inf,
                               x);
          }
        }
        hn::StoreU(x, df, srow);
        vmax = hn::Max(vmax, x);
      }
      // Slots that saw no key yet keep m = -inf: exp against 0 there.
      // Masked scores (-inf) give exactly 0; a NaN or +inf logit makes l
      // NaN for good (ExpKeepNaN keeps NaN, exp(inf - inf) is NaN).
      const auto none = hn::Eq(vmax, neg_inf);
      const V m_use = hn::IfThenZeroElse(none, vmax);
      const V alpha = hn::IfThenZeroElse(hn::Eq(m_old, neg_inf),
                                         ExpKeepNaN(df, hn::Sub(m_old, m_use)));
      // acc is kept as sum p v / scale, scale = l_old * alpha + keys >= l
      // (known before the sum): a bounded mean of V rows, no overflow where
      // the result is finite; the item's end multiplies by scale / l.
      const V scale_old = hn::LoadU(df, sc.scale + c * N);
      const V scale_new =
          hn::MulAdd(scale_old, alpha, hn::Set(df, static_cast<float>(keys)));
      const V inv = hn::Div(one, scale_new);
      V vsum = zero;
      for (int64_t jj = 0; jj < keys; ++jj) {
        float* srow = sc.s + jj * slots + c * N;
        const V e = ExpKeepNaN(df, hn::Sub(hn::LoadU(df, srow), m_use));
        hn::StoreU(hn::Mul(e, inv), df, srow);
        vsum = hn::Add(vsum, e);
      }
      hn::StoreU(hn::MulAdd(hn::LoadU(df, sc.l + c * N), alpha, vsum), df,
                 sc.l + c * N);
      hn::StoreU(scale_new, df, sc.scale + c * N);
      hn::StoreU(vmax, df, sc.m + c * N);
      hn::StoreU(hn::Mul(alpha, hn::Mul(scale_old, inv)), df, sc.alpha + c * N);
    }
    // acc[r] = acc[r] * alpha + sum_j p[j][r] v[j], head by head, up to
    // kDecodePvRows rows at a time so each V row is loaded once for them.
    auto pv = [&](const auto* vrows, int64_t vs, int64_t vh) {
      for (int64_t g = 0; g < H; ++g) {
        // A head's rows have consecutive slots (its tiles are full but the
        // last), so passes may span tiles.
        const int64_t slot_head = g * sh.tiles_per_head * 4;
        for (int64_t i = 0; i < rows_per_group; i += kDecodePvRows) {
          const int64_t n = rows_per_group - i < kDecodePvRows
                                ? rows_per_group - i
                                : kDecodePvRows;
          PvRows(df, n, sc.s + slot_head + i, slots, sc.alpha + slot_head + i,
                 vrows + g * vh, vs, keys,
                 sc.acc + (g * rows_per_group + i) * Dp, Dp);
        }
      }
    };
    if (in_place) {
      pv(vb, p.v_stride_s, p.v_stride_h);
    } else {
      PackBlock(vb, p.v_stride_s, p.v_stride_h, keys, H, D, Dp, sc.vb);
      pv(static_cast<const float*>(sc.vb), H * Dp, Dp);
    }
  }
  // Partial result of this chunk: [R][m, l, acc...].
  float* out = partials + index * R * (Dp + 2);
  for (int64_t slot = 0; slot < slots; ++slot) {
    const int64_t r = slot_row(slot);
    if (r < 0) continue;
    const float l = sc.l[slot];
    out[r * (Dp + 2) + 0] = sc.m[slot];
    out[r * (Dp + 2) + 1] = l;
    // acc / l: the chunk's weighted mean of V (0 with nothing allowed).
    const float f = l == 0.0f ? 0.0f : sc.scale[slot] / l;
    for (int64_t d = 0; d < Dp; ++d)
      out[r * (Dp + 2) + 2 + d] = sc.acc[r * Dp + d] * f;
  }
}

// Whether query t of batch b may attend any key (the masks of DecodeItem,
// one key at a time: only for rows whose softmax sum came out 0).
HWY_INLINE bool DecodeAnyAllowed(const AttentionParams& p, int64_t b,
                                 int64_t t) {
  const int64_t len = p.key_lengths ? p.key_lengths[b] : p.kv_len;
  int64_t filled = len;
  if (p.ring_capacity > 0 && filled > p.ring_capacity) filled = p.ring_capacity;
  if (filled > p.kv_len) filled = p.kv_len;
  const int64_t qpos = QueryPosition(p, b, t);
  for (int64_t j = 0; j < filled; ++j) {
    if (p.key_mask0 && !p.key_mask0[b * p.kv_len + j]) continue;
    if (p.key_mask1 && !p.key_mask1[b * p.kv_len + j]) continue;
    const int64_t kpos = KeyPosition(p, b, j);
    if (p.causal && kpos > qpos) continue;
    if (p.sliding_window > 0 && (qpos - kpos >= p.sliding_window ||
                                 kpos - qpos >= p.sliding_window))
      continue;
    return true;
  }
  return false;
}

// Merges the chunks of batch b in chunk order and writes its rows out.
template <typename T>
void DecodeMerge(const AttentionParams& p, const AttentionPlan& plan, int64_t b,
                 const float* partials, float* tmp) {
  const int64_t R = plan.rows, Dp = plan.dim_padded, D = p.head_dim;
  const int64_t group = p.q_heads / p.kv_heads;
  for (int64_t r = 0; r < R; ++r) {
    // Chunk c: (m_c, l_c, acc_c = its weighted mean of V). l_c == 0: no
    // allowed key in the chunk; NaN l_c: non-finite logits, kept NaN. The
    // row is fully masked only when every l_c is 0 (l == 0 below).
    auto part_of = [&](int64_t c) {
      return partials + ((b * plan.splits + c) * R + r) * (Dp + 2);
    };
    float m = -INFINITY;
    for (int64_t c = 0; c < plan.splits; ++c) {
      const float* part = part_of(c);
      if (part[1] != 0.0f && part[0] > m) m = part[0];
    }
    float l = 0.0f;
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
    const int64_t u = r / p.q_len, t = r % p.q_len, g = u / group;
    // l == 0 with an allowed key: all its logits are -inf (infinite q or k,
    // or scale*q.k overflowing): NaN, as exp(-inf + inf).
    if (l == 0.0f && DecodeAnyAllowed(p, b, t)) {
      for (int64_t d = 0; d < D; ++d) tmp[d] = NAN;
    } else if (l == 0.0f && p.fully_masked_uniform) {
      const T* v =
          static_cast<const T*>(p.v) + b * p.v_stride_b + g * p.v_stride_h;
      // Weights 1/S applied per key: no overflow of the sum.
      const float inv = 1.0f / static_cast<float>(p.kv_len);
      for (int64_t j = 0; j < p.kv_len; ++j) {
        for (int64_t d = 0; d < D; ++d)
          tmp[d] += ToF32<T>(v[j * p.v_stride_s + d]) * inv;
      }
    }
    const int64_t at =
        b * p.out_stride_b + t * p.out_stride_t + u * p.out_stride_h;
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
  const DecodeScratch sc = CarveDecodeSlot(
      *ctx.p, *ctx.plan,
      ctx.slots + slot * static_cast<size_t>(ctx.plan->slot_bytes));
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
  const DecodeScratch sc = CarveDecodeSlot(
      *ctx.p, *ctx.plan,
      ctx.slots + slot * static_cast<size_t>(ctx.plan->slot_bytes));
  const int64_t heads = ctx.p->batch;
  for (;;) {
    const int64_t i = ctx.next_merge.fetch_add(1, std::memory_order_relaxed);
    if (i >= heads) break;
    DecodeMerge<T>(*ctx.p, *ctx.plan, i, ctx.partials, sc.acc);
  }
}

void RunDecode(const AttentionParams& p, const AttentionPlan& plan,
               void* workspace, int64_t slots, pthreadpool_t pool) {
  DecodeContext ctx;
  ctx.p = &p;
  ctx.plan = &plan;
  ctx.partials = static_cast<float*>(workspace);
  ctx.slots = static_cast<unsigned char*>(workspace) + plan.shared_bytes;
  const bool q16 = p.q_type == ElemType::kF16,
             kv16 = p.kv_type == ElemType::kF16;
  const pthreadpool_task_1d_t fn =
      q16 ? (kv16 ? &DecodeSlotTask<uint16_t, uint16_t>
                  : &DecodeSlotTask<uint16_t, float>)
          : (kv16 ? &DecodeSlotTask<float, uint16_t>
                  : &DecodeSlotTask<float, float>);
  int64_t n = slots < plan.items ? slots : plan.items;
  pthreadpool_parallelize_1d(pool, fn, &ctx, static_cast<size_t>(n), 0);
  const int64_t heads = p.batch;
  n = slots < heads ? slots : heads;
  pthreadpool_parallelize_1d(
      pool, kv16 ? &DecodeMergeTask<uint16_t> : &DecodeMergeTask<float>, &ctx,
      static_cast<size_t>(n), 0);
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
  plan->slot_bytes = flash.slot_bytes > decode.slot_bytes ? flash.slot_bytes
                                                          : decode.slot_bytes;
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
