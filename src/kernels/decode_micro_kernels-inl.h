// The decode kernel's register micro-kernels, compiled once per Highway
// target: q.k of a pair of query tiles against key rows (folded into
// "quad" vectors), the reduction of quads to scores, and p.v over up to
// kDecodePvRows rows.
//
// Registers: a q.k pair holds 8 accumulators, the key vector(s) and the
// query loads (fits 16); the 4-key q.k tile (AArch64) 16 accumulators, 4
// key vectors and a query load (21 of 32). A p.v tile holds ROWS x NV <= 16
// accumulators, NV V vectors and one broadcast probability: 8 rows x 2
// vectors (19) where there are 32 registers, 2 rows x 4 vectors (13) where
// there are 16.

#if defined(GQA_SRC_KERNELS_DECODE_MICRO_KERNELS_INL_H_) == \
    defined(HWY_TARGET_TOGGLE)
#ifdef GQA_SRC_KERNELS_DECODE_MICRO_KERNELS_INL_H_
#undef GQA_SRC_KERNELS_DECODE_MICRO_KERNELS_INL_H_
#else
#define GQA_SRC_KERNELS_DECODE_MICRO_KERNELS_INL_H_
#endif

#include <stddef.h>
#include <stdint.h>

#include "hwy/base.h"
#include "hwy/cache_control.h"
#include "hwy/highway.h"
#include "src/kernels/attention_common-inl.h"
#include "src/kernels/decode_pv_rows-inl.h"
#include "src/kernels/vector_registers-inl.h"

HWY_BEFORE_NAMESPACE();
namespace gqa {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Rows per q.k tile: one key row against up to 4 query rows, whose 4
// partial-sum vectors fold into one "quad" vector.
constexpr int64_t kDecodeTileRows = 4;
// Rows per p.v pass: 8 where there are 32 vector registers, else 2.
constexpr int kDecodePvRows = kVectorRegisters >= 32 ? 8 : 2;

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
  // Unreachable: a head's tiles are full (4 rows) but its last, and a pair
  // is two tiles of one head, (last of a head, first of the next), or the
  // call's last tile alone, so the cases above are all there are. Asserted
  // in debug builds; in release the compiler may assume it (an abort call
  // here, even out of line and cold, cost the decode loop 0.4-0.7% more
  // instructions under callgrind).
  HWY_DASSERT(false);
#if defined(__GNUC__) || defined(__clang__)
  __builtin_unreachable();
#endif
}

// q.k of one tile of ROWS query rows (q_stride floats apart, nv vectors
// each) against the rows of 4 neighbouring keys of one head (k, k + ks,
// k + 2 ks, k + 3 ks): each query load serves 4 keys and each key load 4
// rows, 8 loads per 16 FMA into 16 accumulators where QkTilePair needs
// 9-10 loads per 8 (ARM, issue 14: the load unit bounds the pair on the
// A55, 32 vector registers hold the tile). Key e's quad goes to
// dst + e * dst_key_stride. Each (row, key) sum runs over the head dim in
// the same order as in QkTilePair: the same quads, bit for bit. Each step
// prefetches pf_lines lines at pf, as QkTilePair.
template <int ROWS, class DF, typename T>
HWY_INLINE void QkTileFourKeys(DF df, const float* q, int64_t q_stride,
                               const T* k, int64_t ks, int64_t nv, float* dst,
                               int64_t dst_key_stride, const unsigned char*& pf,
                               int pf_lines) {
  static_assert(1 <= ROWS && ROWS <= 4, "rows of a tile");
  using V = hn::Vec<DF>;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  // Named accumulators c<key><row>: SVE vectors cannot be array elements
  // (and GCC spills a NEON array to the stack inside the loop).
  V c00 = hn::Zero(df), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00,
    c12 = c00, c13 = c00, c20 = c00, c21 = c00, c22 = c00, c23 = c00, c30 = c00,
    c31 = c00, c32 = c00, c33 = c00;
  GQA_ARM_UNROLL(2)
  for (int64_t i = 0; i < nv; ++i) {
    for (int e = 0; e < pf_lines; ++e, pf += 64) hwy::Prefetch(pf);
    const V x0 = LoadRow(df, k + i * N);
    const V x1 = LoadRow(df, k + ks + i * N);
    const V x2 = LoadRow(df, k + 2 * ks + i * N);
    const V x3 = LoadRow(df, k + 3 * ks + i * N);
#define GQA_ROW4(r)                                       \
  if (ROWS > r) {                                         \
    const V qr = hn::LoadU(df, q + r * q_stride + i * N); \
    c0##r = hn::MulAdd(qr, x0, c0##r);                    \
    c1##r = hn::MulAdd(qr, x1, c1##r);                    \
    c2##r = hn::MulAdd(qr, x2, c2##r);                    \
    c3##r = hn::MulAdd(qr, x3, c3##r);                    \
  }
    GQA_ROW4(0)
    GQA_ROW4(1)
    GQA_ROW4(2)
    GQA_ROW4(3)
#undef GQA_ROW4
  }
  StoreQuad(df, c00, c01, c02, c03, dst);
  StoreQuad(df, c10, c11, c12, c13, dst + dst_key_stride);
  StoreQuad(df, c20, c21, c22, c23, dst + 2 * dst_key_stride);
  StoreQuad(df, c30, c31, c32, c33, dst + 3 * dst_key_stride);
}

// Dispatch on the tile's rows (1..4).
template <class DF, typename T>
HWY_INLINE void QkTileKeys(DF df, int64_t rows, const float* q,
                           int64_t q_stride, const T* k, int64_t ks, int64_t nv,
                           float* dst, int64_t dst_key_stride,
                           const unsigned char*& pf, int pf_lines) {
  switch (rows) {
    case 1:
      QkTileFourKeys<1>(df, q, q_stride, k, ks, nv, dst, dst_key_stride, pf,
                        pf_lines);
      return;
    case 2:
      QkTileFourKeys<2>(df, q, q_stride, k, ks, nv, dst, dst_key_stride, pf,
                        pf_lines);
      return;
    case 3:
      QkTileFourKeys<3>(df, q, q_stride, k, ks, nv, dst, dst_key_stride, pf,
                        pf_lines);
      return;
    default:
      QkTileFourKeys<4>(df, q, q_stride, k, ks, nv, dst, dst_key_stride, pf,
                        pf_lines);
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
                            const float* HWY_RESTRICT vscale,
                            int64_t vscale_stride, int64_t keys,
                            float* HWY_RESTRICT acc, int64_t acc_stride,
                            int64_t d) {
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
  // Unrolled twice on AArch64 NEON (llvm-mca, issue 14: A55 f32 53% -> 62%
  // of peak, f16 40% -> 50%; q8 25% -> 23% but Cyclone 36% -> 47%).
  GQA_ARM_UNROLL(2)
  for (int64_t jj = 0; jj < keys; ++jj) {
    const T* vr = vrow + jj * key_stride + d;
    V v0, v1, v2, v3;
    LoadRows<NV>(df, vr, v0, v1, v2, v3);
    const float* pk = pr + jj * p_key_stride;
    // int8 (q8) rows: p times the key's V scale, as a dequantized row.
    const float sv = hwy::IsSame<T, int8_t>() ? vscale[jj * vscale_stride] : 1;
#define GQA_ROW_W(r, w_expr)                          \
  if (ROWS > r) {                                     \
    const V w = w_expr;                               \
    c##r##0 = hn::MulAdd(w, v0, c##r##0);             \
    if (NV > 1) c##r##1 = hn::MulAdd(w, v1, c##r##1); \
    if (NV > 2) c##r##2 = hn::MulAdd(w, v2, c##r##2); \
    if (NV > 3) c##r##3 = hn::MulAdd(w, v3, c##r##3); \
  }
#define GQA_ROW(r) \
  GQA_ROW_W(r, hn::Set(df, hwy::IsSame<T, int8_t>() ? pk[r] * sv : pk[r]))
#if HWY_TARGET == HWY_NEON
    // NEON, 4 or 8 rows: the rows' p of this key are contiguous,
    // so 1-2 vector loads and by-element FMA take them, not 4-8 scalar
    // loads (issue 14: the A55's one load unit bounds this loop).
    // q8: p times the V scale as 1-2 vector multiplies (the same products
    // as the scalar ones below, bit for bit).
    if (ROWS == 4 || ROWS == 8) {
      V p0 = hn::LoadU(df, pk);
      V p1 = ROWS == 8 ? hn::LoadU(df, pk + 4) : p0;
      if (hwy::IsSame<T, int8_t>()) {
        const V s = hn::Set(df, sv);
        p0 = hn::Mul(p0, s);
        p1 = hn::Mul(p1, s);
      }
      GQA_ROW_W(0, hn::Broadcast<0>(p0))
      GQA_ROW_W(1, hn::Broadcast<1>(p0))
      GQA_ROW_W(2, hn::Broadcast<2>(p0))
      GQA_ROW_W(3, hn::Broadcast<3>(p0))
      GQA_ROW_W(4, hn::Broadcast<0>(p1))
      GQA_ROW_W(5, hn::Broadcast<1>(p1))
      GQA_ROW_W(6, hn::Broadcast<2>(p1))
      GQA_ROW_W(7, hn::Broadcast<3>(p1))
    } else  // NOLINT(readability/braces)
#endif
    {
      GQA_ROW(0)
      GQA_ROW(1)
      GQA_ROW(2) GQA_ROW(3) GQA_ROW(4) GQA_ROW(5) GQA_ROW(6) GQA_ROW(7)
    }
#undef GQA_ROW
#undef GQA_ROW_W
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
                              int64_t key_stride, const float* vscale,
                              int64_t vscale_stride, int64_t keys, float* acc,
                              int64_t Dp) {
  constexpr int kNVChunk = ROWS <= 4 ? 4 : 2;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  int64_t d = 0;
  for (; d + kNVChunk * N <= Dp; d += kNVChunk * N) {
    PvRowsFixed<ROWS, kNVChunk>(df, pr, p_key_stride, alpha, vrow, key_stride,
                                vscale, vscale_stride, keys, acc, Dp, d);
  }
  for (; d < Dp; d += N) {
    PvRowsFixed<ROWS, 1>(df, pr, p_key_stride, alpha, vrow, key_stride, vscale,
                         vscale_stride, keys, acc, Dp, d);
  }
}

// acc [rows][Dp] = acc * alpha + p . v for 1 <= rows <= kDecodePvRows
// (cases past kDecodePvRows are never called and not instantiated).
// pr: p of row i, key jj at pr[jj * p_key_stride + i]; vrow: [keys]
// [key_stride]; Dp a multiple of Lanes(df). int8 rows (q8 codes) take key
// jj's scale from vscale[jj * vscale_stride] (other types ignore it).
template <class DF, typename T>
HWY_INLINE void PvRows(DF df, int64_t rows, const float* pr,
                       int64_t p_key_stride, const float* alpha, const T* vrow,
                       int64_t key_stride, const float* vscale,
                       int64_t vscale_stride, int64_t keys, float* acc,
                       int64_t Dp) {
  HWY_DASSERT(1 <= rows && rows <= kDecodePvRows);
#define GQA_PV_CASE(n)                                                      \
  case n:                                                                   \
    PvRowsAllDims<(n <= kDecodePvRows ? n : 1)>(                            \
        df, pr, p_key_stride, alpha, vrow, key_stride, vscale,              \
        vscale_stride, keys, acc, Dp);                                      \
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
                                   key_stride, vscale, vscale_stride, keys,
                                   acc, Dp);
  }
#undef GQA_PV_CASE
}

}  // namespace HWY_NAMESPACE
}  // namespace gqa
HWY_AFTER_NAMESPACE();

#endif  // include guard per target
