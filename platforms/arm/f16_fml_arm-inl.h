// The FEAT_FHM loops of platforms/f16_fml.h as inline functions, for
// f16_fml_arm.cc and the llvm-mca harness (bench/mca/): include only in a
// file built for armv8.2-a+fp16+fp16fml.
//
// q.k: one tile = 4 neighbouring keys of one head x up to 4 query rows, 16
// f32x4 accumulators. Per 8 elements of the head dim: 4 key loads and 4
// query loads (8 f16 each) feed 32 FMLAL/FMLAL2 (128 MACs), where
// the f32 tile (QkTileFourKeys) needs 8 loads and 4 widenings per 16 FMA
// (64 MACs). Each accumulator holds 4 partial sums of one (key, row) pair;
// two pairwise-add levels fold 4 of them into one key's 4 scores.
// p.v: ROWS rows x 8 * NV head dims (ROWS * 2 * NV <= 16 accumulators):
// per key one load of the rows' f16 p (8 lanes) and NV V loads feed
// ROWS * 2 * NV by-element FMLAL (lane = row).
#ifndef GQA_PLATFORMS_ARM_F16_FML_ARM_INL_H_
#define GQA_PLATFORMS_ARM_F16_FML_ARM_INL_H_

#include <arm_neon.h>
#include <stdint.h>
#include <string.h>

#include "platforms/f16_fml.h"

// Unrolled (GCC): the in-order Cortex-A55 then overlaps one step's loads
// with another's FMLAL (llvm-mca, bench/PERFORMANCE.md: q.k 3.8 -> 5.0
// MACs/cycle unrolled twice). GQA_FHM_ORDER() / GQA_FHM_HERE(x): the
// issue-order barriers of GQA_ARM_ISSUE_ORDER / _HERE
// (src/kernels/vector_registers-inl.h) for this non-Highway file: no
// instruction, GCC keeps the source's order of loads and FMLAL across them
// and computes the integer x (a pointer, a counter) where the source puts
// it. Empty elsewhere.
#if defined(__GNUC__) && !defined(__clang__)
#define GQA_FHM_PRAGMA(x) _Pragma(#x)
#define GQA_FHM_UNROLL(n) GQA_FHM_PRAGMA(GCC unroll n)
#define GQA_FHM_ORDER() __asm__ __volatile__("")
#define GQA_FHM_HERE(x) __asm__ __volatile__("" : "+r"(x))
#else
#define GQA_FHM_UNROLL(n)
#define GQA_FHM_ORDER()
#define GQA_FHM_HERE(x)
#endif

namespace gqa {
namespace fhm {

inline float16x8_t LoadH(const uint16_t* p) {
  return vreinterpretq_f16_u16(vld1q_u16(p));
}

// By-element FMLAL / FMLAL2: acc + v[0, 4) * p[LANE] (Low), acc + v[4, 8)
// * p[LANE] (High), in f32. Clang (seen in 14, the NDK r25 one; LLVM issue
// #64104, the fixed version unconfirmed, so all clang): for
// vfmlalq_laneq_{low,high}_f16 it may put p in v16-v31, but the by-element
// encoding has 4 bits for Vm (v0-v15), and its assembler silently encodes
// another register: wrong results. Hence inline asm, "x" = v0-v15 for p.
// Not volatile: clang schedules it as any instruction (GQA_FHM_ORDER /
// _HERE, GCC-only, are empty there). GCC: the intrinsics, unchanged.
template <int LANE>
inline float32x4_t FmlalLow(float32x4_t acc, float16x8_t v, float16x8_t p) {
#if defined(__clang__)
  __asm__("fmlal %0.4s, %1.4h, %2.h[%c3]"
          : "+w"(acc)
          : "w"(v), "x"(p), "i"(LANE));
  return acc;
#else
  return vfmlalq_laneq_low_f16(acc, v, p, LANE);
#endif
}
template <int LANE>
inline float32x4_t FmlalHigh(float32x4_t acc, float16x8_t v, float16x8_t p) {
#if defined(__clang__)
  __asm__("fmlal2 %0.4s, %1.4h, %2.h[%c3]"
          : "+w"(acc)
          : "w"(v), "x"(p), "i"(LANE));
  return acc;
#else
  return vfmlalq_laneq_high_f16(acc, v, p, LANE);
#endif
}

// [sum(c0), sum(c1), sum(c2), sum(c3)].
inline float32x4_t Sum4(float32x4_t c0, float32x4_t c1, float32x4_t c2,
                        float32x4_t c3) {
  return vpaddq_f32(vpaddq_f32(c0, c1), vpaddq_f32(c2, c3));
}

// Scores of ROWS query rows q [ROWS][q_stride] against 4 keys (k + e * ks,
// e < 4), dim a multiple of 8: key e's 4 scores (0 past ROWS) at
// s + e * slots.
template <int ROWS>
inline void QkFourKeys(const uint16_t* q, int64_t q_stride, const uint16_t* k,
                       int64_t ks, int64_t dim, float* s, int64_t slots) {
  static_assert(1 <= ROWS && ROWS <= 4, "rows of a tile");
  const float32x4_t z = vdupq_n_f32(0.0f);
  // c<key><row>: named, so that they stay in registers.
  float32x4_t c00 = z, c01 = z, c02 = z, c03 = z, c10 = z, c11 = z, c12 = z,
              c13 = z, c20 = z, c21 = z, c22 = z, c23 = z, c30 = z, c31 = z,
              c32 = z, c33 = z;
  GQA_FHM_UNROLL(2)
  for (int64_t d = 0; d < dim; d += 8) {
    const float16x8_t k0 = LoadH(k + d);
    const float16x8_t k1 = LoadH(k + ks + d);
    const float16x8_t k2 = LoadH(k + 2 * ks + d);
    const float16x8_t k3 = LoadH(k + 3 * ks + d);
#define GQA_FHM_ROW4(r)                                 \
  if (ROWS > r) {                                       \
    const float16x8_t qr = LoadH(q + r * q_stride + d); \
    c0##r = vfmlalq_low_f16(c0##r, qr, k0);             \
    c1##r = vfmlalq_low_f16(c1##r, qr, k1);             \
    c2##r = vfmlalq_low_f16(c2##r, qr, k2);             \
    c3##r = vfmlalq_low_f16(c3##r, qr, k3);             \
    c0##r = vfmlalq_high_f16(c0##r, qr, k0);            \
    c1##r = vfmlalq_high_f16(c1##r, qr, k1);            \
    c2##r = vfmlalq_high_f16(c2##r, qr, k2);            \
    c3##r = vfmlalq_high_f16(c3##r, qr, k3);            \
  }
    GQA_FHM_ROW4(0)
    GQA_FHM_ROW4(1)
    GQA_FHM_ROW4(2)
    GQA_FHM_ROW4(3)
#undef GQA_FHM_ROW4
  }
  vst1q_f32(s, Sum4(c00, c01, c02, c03));
  vst1q_f32(s + slots, Sum4(c10, c11, c12, c13));
  vst1q_f32(s + 2 * slots, Sum4(c20, c21, c22, c23));
  vst1q_f32(s + 3 * slots, Sum4(c30, c31, c32, c33));
}

// One key: 2 accumulators per row (FMLAL and FMLAL2 apart) for 8 chains.
template <int ROWS>
inline void QkOneKey(const uint16_t* q, int64_t q_stride, const uint16_t* k,
                     int64_t dim, float* s) {
  static_assert(1 <= ROWS && ROWS <= 4, "rows of a tile");
  const float32x4_t z = vdupq_n_f32(0.0f);
  float32x4_t l0 = z, l1 = z, l2 = z, l3 = z, h0 = z, h1 = z, h2 = z, h3 = z;
  for (int64_t d = 0; d < dim; d += 8) {
    const float16x8_t k0 = LoadH(k + d);
#define GQA_FHM_ROW1(r)                                 \
  if (ROWS > r) {                                       \
    const float16x8_t qr = LoadH(q + r * q_stride + d); \
    l##r = vfmlalq_low_f16(l##r, qr, k0);               \
    h##r = vfmlalq_high_f16(h##r, qr, k0);              \
  }
    GQA_FHM_ROW1(0)
    GQA_FHM_ROW1(1)
    GQA_FHM_ROW1(2)
    GQA_FHM_ROW1(3)
#undef GQA_FHM_ROW1
  }
  vst1q_f32(s, Sum4(vaddq_f32(l0, h0), vaddq_f32(l1, h1), vaddq_f32(l2, h2),
                    vaddq_f32(l3, h3)));
}

// acc [ROWS][acc_stride] at column d: acc * alpha + sum_jj p16[jj][r] *
// v[jj][d .. d + 8 NV) (p16: [keys][8] f16, lane r = row r).
// Software-pipelined in two register sets a, b (V row a0/a1, p pa): key
// jj's FMLAL read set a while key jj + 1's V and p load into set b between
// them (V after row 0, p after row 1, pinned by GQA_FHM_ORDER), then the
// roles swap (8x1: 16 FMLAL a key). The load-use distance is then 14
// FMLAL, not 0-1, and no V row is copied to free its register for the
// next one (GCC's own schedule of the plain loop unrolled 4 times: 2 `mov
// v.16b` per 4 keys, which the Cyclone model's 3 vector pipes pay; loads
// just before their FMLAL on the A55). llvm-mca, 8x1, per 4 keys: A55
// 54.0 -> 41.0 cycles, Cyclone 22.05 -> 21.4 (bench/PERFORMANCE.md).
// Nothing past key keys - 1 is loaded (a cache block may end at its
// buffer's end). Per accumulator the same FMLAL in key order as a plain
// loop: bit-identical.
template <int ROWS, int NV>
inline void PvFixed(const uint16_t* p16, const float* alpha, const uint16_t* v,
                    int64_t key_stride, int64_t keys, float* acc,
                    int64_t acc_stride, int64_t d) {
  static_assert(
      1 <= ROWS && ROWS <= 8 && (NV == 1 || NV == 2) && ROWS * 2 * NV <= 16,
      "register tile");
  const float32x4_t z = vdupq_n_f32(0.0f);
#define GQA_FHM_LOADA(r)                                          \
  float32x4_t c##r##0 = z, c##r##1 = z, c##r##2 = z, c##r##3 = z; \
  if (ROWS > r) {                                                 \
    const float a = alpha[r];                                     \
    const float* ar = acc + r * acc_stride + d;                   \
    c##r##0 = vmulq_n_f32(vld1q_f32(ar), a);                      \
    c##r##1 = vmulq_n_f32(vld1q_f32(ar + 4), a);                  \
    if (NV > 1) {                                                 \
      c##r##2 = vmulq_n_f32(vld1q_f32(ar + 8), a);                \
      c##r##3 = vmulq_n_f32(vld1q_f32(ar + 12), a);               \
    }                                                             \
  }
  GQA_FHM_LOADA(0)
  GQA_FHM_LOADA(1)
  GQA_FHM_LOADA(2)
  GQA_FHM_LOADA(3)
  GQA_FHM_LOADA(4)
  GQA_FHM_LOADA(5)
  GQA_FHM_LOADA(6)
  GQA_FHM_LOADA(7)
#undef GQA_FHM_LOADA
// Row r's 2 NV FMLAL (lane r of p) on set s.
#define GQA_FHM_PV(r, s)                           \
  if (ROWS > r) {                                  \
    c##r##0 = FmlalLow<r>(c##r##0, s##0, p##s);    \
    c##r##1 = FmlalHigh<r>(c##r##1, s##0, p##s);   \
    if (NV > 1) {                                  \
      c##r##2 = FmlalLow<r>(c##r##2, s##1, p##s);  \
      c##r##3 = FmlalHigh<r>(c##r##3, s##1, p##s); \
    }                                              \
  }
#define GQA_FHM_PV_REST(s) \
  GQA_FHM_PV(2, s)         \
  GQA_FHM_PV(3, s)         \
  GQA_FHM_PV(4, s)         \
  GQA_FHM_PV(5, s)         \
  GQA_FHM_PV(6, s)         \
  GQA_FHM_PV(7, s)
// One key on set s while the next key's V (at vr, then advanced by adv
// keys) and p (at pr + po) load into set t.
#define GQA_FHM_KEY(s, t, po, adv)  \
  GQA_FHM_PV(0, s)                  \
  GQA_FHM_ORDER();                  \
  t##0 = LoadH(vr);                 \
  if (NV > 1) t##1 = LoadH(vr + 8); \
  GQA_FHM_HERE(vr);                 \
  vr += adv * key_stride;           \
  GQA_FHM_HERE(vr);                 \
  GQA_FHM_PV(1, s)                  \
  GQA_FHM_ORDER();                  \
  p##t = LoadH(pr + po);            \
  GQA_FHM_ORDER();                  \
  GQA_FHM_PV_REST(s)
  if (keys > 0) {
    const uint16_t* vr = v + d;
    const uint16_t* pr = p16;
    float16x8_t a0 = LoadH(vr), a1 = NV > 1 ? LoadH(vr + 8) : a0;
    float16x8_t pa = LoadH(pr);
    float16x8_t b0 = a0, b1 = a1, pb = pa;
    if (keys > 1) vr += key_stride;
    // Keys jj, jj + 1 on sets a, b, loading keys jj + 1, jj + 2 (< keys),
    // for (keys - 1) / 2 pairs: a count down at the top, each pointer
    // advanced a key or more before its next load (ALU latency 3 on the A55
    // model).
    for (int64_t n = (keys - 1) / 2; n != 0;) {
      --n;
      GQA_FHM_HERE(n);
      GQA_FHM_KEY(a, b, 8, 1)
      GQA_FHM_HERE(pr);
      pr += 16;
      GQA_FHM_HERE(pr);
      GQA_FHM_KEY(b, a, 0, 1)
    }
    // 1 or 2 keys left, the last one loads nothing.
    if ((keys & 1) == 0) {
      GQA_FHM_KEY(a, b, 8, 0)
      GQA_FHM_PV(0, b)
      GQA_FHM_PV(1, b)
      GQA_FHM_PV_REST(b)
    } else {
      GQA_FHM_PV(0, a)
      GQA_FHM_PV(1, a)
      GQA_FHM_PV_REST(a)
    }
  }
#undef GQA_FHM_KEY
#undef GQA_FHM_PV_REST
#undef GQA_FHM_PV
#define GQA_FHM_STOREA(r)                 \
  if (ROWS > r) {                         \
    float* ar = acc + r * acc_stride + d; \
    vst1q_f32(ar, c##r##0);               \
    vst1q_f32(ar + 4, c##r##1);           \
    if (NV > 1) {                         \
      vst1q_f32(ar + 8, c##r##2);         \
      vst1q_f32(ar + 12, c##r##3);        \
    }                                     \
  }
  GQA_FHM_STOREA(0)
  GQA_FHM_STOREA(1)
  GQA_FHM_STOREA(2)
  GQA_FHM_STOREA(3)
  GQA_FHM_STOREA(4)
  GQA_FHM_STOREA(5)
  GQA_FHM_STOREA(6)
  GQA_FHM_STOREA(7)
#undef GQA_FHM_STOREA
}

// All dims (a multiple of 8): chunks of 16 where ROWS <= 4, then of 8.
template <int ROWS>
inline void PvAllDims(const uint16_t* p16, const float* alpha,
                      const uint16_t* v, int64_t key_stride, int64_t keys,
                      float* acc, int64_t acc_stride, int64_t dim) {
  int64_t d = 0;
  if (ROWS <= 4) {
    for (; d + 16 <= dim; d += 16) {
      PvFixed<ROWS, ROWS <= 4 ? 2 : 1>(p16, alpha, v, key_stride, keys, acc,
                                       acc_stride, d);
    }
  }
  for (; d < dim; d += 8) {
    PvFixed<ROWS, 1>(p16, alpha, v, key_stride, keys, acc, acc_stride, d);
  }
}

}  // namespace fhm
}  // namespace gqa

#endif  // GQA_PLATFORMS_ARM_F16_FML_ARM_INL_H_
