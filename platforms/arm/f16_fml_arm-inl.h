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
// MACs/cycle unrolled twice; p.v 3.6 -> 4.3 twice, 4.7 four times).
#if defined(__GNUC__) && !defined(__clang__)
#define GQA_FHM_PRAGMA(x) _Pragma(#x)
#define GQA_FHM_UNROLL(n) GQA_FHM_PRAGMA(GCC unroll n)
#else
#define GQA_FHM_UNROLL(n)
#endif

namespace gqa {
namespace fhm {

inline float16x8_t LoadH(const uint16_t* p) {
  return vreinterpretq_f16_u16(vld1q_u16(p));
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
  GQA_FHM_UNROLL(4)
  for (int64_t jj = 0; jj < keys; ++jj) {
    const uint16_t* vr = v + jj * key_stride + d;
    const float16x8_t v0 = LoadH(vr);
    const float16x8_t v1 = NV > 1 ? LoadH(vr + 8) : v0;
    const float16x8_t pj = LoadH(p16 + jj * 8);
#define GQA_FHM_PV(r)                                       \
  if (ROWS > r) {                                           \
    c##r##0 = vfmlalq_laneq_low_f16(c##r##0, v0, pj, r);    \
    c##r##1 = vfmlalq_laneq_high_f16(c##r##1, v0, pj, r);   \
    if (NV > 1) {                                           \
      c##r##2 = vfmlalq_laneq_low_f16(c##r##2, v1, pj, r);  \
      c##r##3 = vfmlalq_laneq_high_f16(c##r##3, v1, pj, r); \
    }                                                       \
  }
    GQA_FHM_PV(0)
    GQA_FHM_PV(1)
    GQA_FHM_PV(2)
    GQA_FHM_PV(3)
    GQA_FHM_PV(4)
    GQA_FHM_PV(5)
    GQA_FHM_PV(6)
    GQA_FHM_PV(7)
#undef GQA_FHM_PV
  }
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
