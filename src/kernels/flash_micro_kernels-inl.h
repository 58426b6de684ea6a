// The flash kernel's register micro-tiles, compiled once per Highway
// target: the q.k tile (4 keys x kFlashTileVectors vectors of queries) and
// the p.v tile (4 query rows x kFlashTileVectors vectors of head dims).
//
// Registers: q.k holds 4 * kFlashTileVectors accumulators, kFlashTileVectors
// query vectors and one broadcast key element: 21 with 4 vectors (fits 32
// registers), 11 with 2 (fits 16). p.v likewise (accumulators, V vectors,
// one broadcast probability). Loads and stores are unaligned (LoadU).

#if defined(GQA_SRC_KERNELS_FLASH_MICRO_KERNELS_INL_H_) == \
    defined(HWY_TARGET_TOGGLE)
#ifdef GQA_SRC_KERNELS_FLASH_MICRO_KERNELS_INL_H_
#undef GQA_SRC_KERNELS_FLASH_MICRO_KERNELS_INL_H_
#else
#define GQA_SRC_KERNELS_FLASH_MICRO_KERNELS_INL_H_
#endif

#include <stddef.h>
#include <stdint.h>

#include "hwy/highway.h"
#include "src/kernels/vector_registers-inl.h"

HWY_BEFORE_NAMESPACE();
namespace gqa {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Vectors per micro-tile row: 4 where the ISA has 32 vector registers, else
// 2 (see the register count above).
constexpr int kFlashTileVectors = kVectorRegisters >= 32 ? 4 : 2;

// s[j][m0 + i] = sum_d kt[j][d] * qt[d][m0 + i] for the 4 keys j0..j0+3
// and i < kFlashTileVectors * N. qt: [dim][mp], kt: [keys][k_stride],
// s: [keys][mp] (strides in floats).
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
  GQA_ARM_UNROLL(2)
  for (int64_t d = 0; d < dim; ++d, q += mp) {
    const V q0 = hn::LoadU(df, q);
    const V q1 = hn::LoadU(df, q + N);
    V q2 = q0, q3 = q0;
    if (kFlashTileVectors > 2) {
      q2 = hn::LoadU(df, q + 2 * N);
      q3 = hn::LoadU(df, q + 3 * N);
    }
    V b = hn::Set(df, k0[d]);
    c00 = hn::MulAdd(b, q0, c00);
    c01 = hn::MulAdd(b, q1, c01);
    if (kFlashTileVectors > 2) {
      c02 = hn::MulAdd(b, q2, c02);
      c03 = hn::MulAdd(b, q3, c03);
    }
    b = hn::Set(df, k1[d]);
    c10 = hn::MulAdd(b, q0, c10);
    c11 = hn::MulAdd(b, q1, c11);
    if (kFlashTileVectors > 2) {
      c12 = hn::MulAdd(b, q2, c12);
      c13 = hn::MulAdd(b, q3, c13);
    }
    b = hn::Set(df, k2[d]);
    c20 = hn::MulAdd(b, q0, c20);
    c21 = hn::MulAdd(b, q1, c21);
    if (kFlashTileVectors > 2) {
      c22 = hn::MulAdd(b, q2, c22);
      c23 = hn::MulAdd(b, q3, c23);
    }
    b = hn::Set(df, k3[d]);
    c30 = hn::MulAdd(b, q0, c30);
    c31 = hn::MulAdd(b, q1, c31);
    if (kFlashTileVectors > 2) {
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
  if (kFlashTileVectors > 2) {
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

// o[m][d0 + i] = o[m][d0 + i] * alpha[m] + sum_j s[j][m] * vt[j][d0 + i]
// for the 4 rows m0..m0+3, i < kFlashTileVectors * N, j < keys (alpha
// null: no rescale). s: [keys][mp], vt: [keys][v_stride], o: [rows][dp].
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
  if (kFlashTileVectors > 2) {
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
    if (kFlashTileVectors > 2) {
      c02 = hn::Mul(c02, a0), c03 = hn::Mul(c03, a0);
      c12 = hn::Mul(c12, a1), c13 = hn::Mul(c13, a1);
      c22 = hn::Mul(c22, a2), c23 = hn::Mul(c23, a2);
      c32 = hn::Mul(c32, a3), c33 = hn::Mul(c33, a3);
    }
  }
  const float* v = vt + d0;
  const float* pr = s + m0;
  GQA_ARM_UNROLL(2)
  for (int64_t j = 0; j < keys; ++j, v += v_stride, pr += mp) {
    const V v0 = hn::LoadU(df, v);
    const V v1 = hn::LoadU(df, v + N);
    V v2 = v0, v3 = v0;
    if (kFlashTileVectors > 2) {
      v2 = hn::LoadU(df, v + 2 * N);
      v3 = hn::LoadU(df, v + 3 * N);
    }
    // AArch64 NEON: the 4 rows' p of key j are contiguous: one vector load
    // and by-element FMA, not 4 scalar loads (issue 14: A55 load unit).
#if HWY_ARCH_ARM_A64 && HWY_TARGET == HWY_NEON
    const V p4 = hn::LoadU(df, pr);
#define GQA_P(r) hn::Broadcast<r>(p4)
#else
#define GQA_P(r) hn::Set(df, pr[r])
#endif
    V b = GQA_P(0);
    c00 = hn::MulAdd(b, v0, c00);
    c01 = hn::MulAdd(b, v1, c01);
    if (kFlashTileVectors > 2) {
      c02 = hn::MulAdd(b, v2, c02);
      c03 = hn::MulAdd(b, v3, c03);
    }
    b = GQA_P(1);
    c10 = hn::MulAdd(b, v0, c10);
    c11 = hn::MulAdd(b, v1, c11);
    if (kFlashTileVectors > 2) {
      c12 = hn::MulAdd(b, v2, c12);
      c13 = hn::MulAdd(b, v3, c13);
    }
    b = GQA_P(2);
    c20 = hn::MulAdd(b, v0, c20);
    c21 = hn::MulAdd(b, v1, c21);
    if (kFlashTileVectors > 2) {
      c22 = hn::MulAdd(b, v2, c22);
      c23 = hn::MulAdd(b, v3, c23);
    }
    b = GQA_P(3);
    c30 = hn::MulAdd(b, v0, c30);
    c31 = hn::MulAdd(b, v1, c31);
    if (kFlashTileVectors > 2) {
      c32 = hn::MulAdd(b, v2, c32);
      c33 = hn::MulAdd(b, v3, c33);
    }
  }
#undef GQA_P
  hn::StoreU(c00, df, o0);
  hn::StoreU(c01, df, o0 + N);
  hn::StoreU(c10, df, o1);
  hn::StoreU(c11, df, o1 + N);
  hn::StoreU(c20, df, o2);
  hn::StoreU(c21, df, o2 + N);
  hn::StoreU(c30, df, o3);
  hn::StoreU(c31, df, o3 + N);
  if (kFlashTileVectors > 2) {
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

}  // namespace HWY_NAMESPACE
}  // namespace gqa
HWY_AFTER_NAMESPACE();

#endif  // include guard per target
