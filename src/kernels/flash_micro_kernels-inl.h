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

#if HWY_ARCH_ARM_A64 && HWY_TARGET == HWY_NEON
// AArch64 NEON q.k over the head dims in groups of 4 (issue 14, llvm-mca,
// the in-order dual-issue Cortex-A55): one `ldr q` of each key row serves
// 4 dims through by-element FMA, so a group is 16 query loads + 4 key loads
// per 64 FMA instead of 32 + 16, and it is software-pipelined: the query
// vectors of dim d + 1 (and at the group's last dim the next group's key
// vectors) load between the FMA of dim d, two query sets alternating, so
// that every load issues beside an FMA and is ready 6+ cycles later. The
// same sums in the same order as the scalar-key loop (bit for bit).
// Returns the dims done (a multiple of 4); q points at dim 0.
template <class DF, class V>
HWY_INLINE int64_t QkMicroTileGroups(
    DF df, const float* HWY_RESTRICT q, int64_t mp,
    const float* HWY_RESTRICT k0, const float* HWY_RESTRICT k1,
    const float* HWY_RESTRICT k2, const float* HWY_RESTRICT k3, int64_t dim,
    V& c00, V& c01, V& c02, V& c03, V& c10, V& c11, V& c12, V& c13, V& c20,
    V& c21, V& c22, V& c23, V& c30, V& c31, V& c32, V& c33) {
  const int64_t groups = dim / 4;
  if (groups == 0) return 0;
  const size_t N = hn::Lanes(df);
  V x0 = hn::LoadU(df, k0), x1 = hn::LoadU(df, k1);
  V x2 = hn::LoadU(df, k2), x3 = hn::LoadU(df, k3);
  V a0 = hn::LoadU(df, q), a1 = hn::LoadU(df, q + N);
  V a2 = hn::LoadU(df, q + 2 * N), a3 = hn::LoadU(df, q + 3 * N);
  V b0, b1, b2, b3;
// Key j's 4 FMA with query set s at lane l of its key vector.
#define GQA_QK4(j, s, l)                                       \
  c##j##0 = hn::MulAdd(hn::Broadcast<l>(x##j), s##0, c##j##0); \
  c##j##1 = hn::MulAdd(hn::Broadcast<l>(x##j), s##1, c##j##1); \
  c##j##2 = hn::MulAdd(hn::Broadcast<l>(x##j), s##2, c##j##2); \
  c##j##3 = hn::MulAdd(hn::Broadcast<l>(x##j), s##3, c##j##3);
// Dim l of the group with set s, loading set t from qn (the next dim).
#define GQA_QK_DIM(s, t, l, qn)     \
  t##0 = hn::LoadU(df, qn);         \
  GQA_QK4(0, s, l)                  \
  GQA_ARM_ISSUE_ORDER();            \
  t##1 = hn::LoadU(df, qn + N);     \
  GQA_QK4(1, s, l)                  \
  GQA_ARM_ISSUE_ORDER();            \
  t##2 = hn::LoadU(df, qn + 2 * N); \
  GQA_QK4(2, s, l)                  \
  GQA_ARM_ISSUE_ORDER();            \
  t##3 = hn::LoadU(df, qn + 3 * N); \
  GQA_QK4(3, s, l)                  \
  GQA_ARM_ISSUE_ORDER();
// The group's last dim also loads the next group's key vectors from kd,
// each after its key's last FMA.
#define GQA_QK_LAST(j, qn, kd)      \
  a##j = hn::LoadU(df, qn + j * N); \
  GQA_QK4(j, b, 3)                  \
  x##j = hn::LoadU(df, k##j + kd);  \
  GQA_ARM_ISSUE_ORDER();
  // Dims 4g + 1, 4g + 3 load from qo, 4g + 2, 4g + 4 from qe, each pointer
  // advanced after its last load, and a counter decremented at the top: no
  // load or branch waits for the add before it (ALU latency 3, A55 model).
  const float* qo = q + mp;
  const float* qe = q + 2 * mp;
  int64_t kd = 4;
  for (int64_t n = groups - 1; n != 0;) {
    --n;
    GQA_ARM_ISSUE_HERE(n);
    GQA_QK_DIM(a, b, 0, qo)
    GQA_QK_DIM(b, a, 1, qe)
    GQA_QK_DIM(a, b, 2, qo + 2 * mp)
    qo += 4 * mp;
    GQA_ARM_ISSUE_HERE(qo);
    GQA_QK_LAST(0, qe + 2 * mp, kd)
    GQA_QK_LAST(1, qe + 2 * mp, kd)
    GQA_QK_LAST(2, qe + 2 * mp, kd)
    GQA_QK_LAST(3, qe + 2 * mp, kd)
    qe += 4 * mp;
    kd += 4;
    GQA_ARM_ISSUE_HERE(qe);
  }
  // The last group: nothing past it is loaded.
  GQA_QK_DIM(a, b, 0, qo)
  GQA_QK_DIM(b, a, 1, qe)
  GQA_QK_DIM(a, b, 2, qo + 2 * mp)
  GQA_QK4(0, b, 3)
  GQA_QK4(1, b, 3)
  GQA_QK4(2, b, 3)
  GQA_QK4(3, b, 3)
#undef GQA_QK_LAST
#undef GQA_QK_DIM
#undef GQA_QK4
  return groups * 4;
}
#endif  // HWY_ARCH_ARM_A64 && HWY_TARGET == HWY_NEON

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
  int64_t d0 = 0;
#if HWY_ARCH_ARM_A64 && HWY_TARGET == HWY_NEON
  d0 = QkMicroTileGroups(df, qt + m0, mp, k0, k1, k2, k3, dim, c00, c01, c02,
                         c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31,
                         c32, c33);
#endif
  const float* q = qt + m0 + d0 * mp;
  GQA_ARM_UNROLL(2)
  for (int64_t d = d0; d < dim; ++d, q += mp) {
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

#if HWY_ARCH_ARM_A64 && HWY_TARGET == HWY_NEON
// AArch64 NEON p.v over the keys, software-pipelined as QkMicroTileGroups:
// key j's V vectors and p load between the FMA of key j - 1, two sets
// alternating (the loop body takes 2 keys), so that each load issues beside
// an FMA on the in-order A55. The same sums in the same order as the plain
// loop (bit for bit). pr: key 0's 4 p, v: key 0's V.
template <class DF, class V>
HWY_INLINE void PvMicroTileKeys(DF df, const float* HWY_RESTRICT pr, int64_t mp,
                                const float* HWY_RESTRICT v, int64_t v_stride,
                                int64_t keys, V& c00, V& c01, V& c02, V& c03,
                                V& c10, V& c11, V& c12, V& c13, V& c20, V& c21,
                                V& c22, V& c23, V& c30, V& c31, V& c32,
                                V& c33) {
  if (keys <= 0) return;
  const size_t N = hn::Lanes(df);
  V pa = hn::LoadU(df, pr), a0 = hn::LoadU(df, v), a1 = hn::LoadU(df, v + N);
  V a2 = hn::LoadU(df, v + 2 * N), a3 = hn::LoadU(df, v + 3 * N);
  V pb, b0, b1, b2, b3;
// Row r's 4 FMA with V set s and p vector ps.
#define GQA_PV4(r, s, ps)                                    \
  c##r##0 = hn::MulAdd(hn::Broadcast<r>(ps), s##0, c##r##0); \
  c##r##1 = hn::MulAdd(hn::Broadcast<r>(ps), s##1, c##r##1); \
  c##r##2 = hn::MulAdd(hn::Broadcast<r>(ps), s##2, c##r##2); \
  c##r##3 = hn::MulAdd(hn::Broadcast<r>(ps), s##3, c##r##3);
// One key with (s, ps) while loading (t, pt) of the next key from vn, pn.
#define GQA_PV_KEY(s, ps, t, pt, vn, pn) \
  t##0 = hn::LoadU(df, vn);              \
  GQA_PV4(0, s, ps)                      \
  GQA_ARM_ISSUE_ORDER();                 \
  t##1 = hn::LoadU(df, vn + N);          \
  pt = hn::LoadU(df, pn);                \
  GQA_PV4(1, s, ps)                      \
  GQA_ARM_ISSUE_ORDER();                 \
  t##2 = hn::LoadU(df, vn + 2 * N);      \
  GQA_PV4(2, s, ps)                      \
  GQA_ARM_ISSUE_ORDER();                 \
  t##3 = hn::LoadU(df, vn + 3 * N);      \
  GQA_PV4(3, s, ps)                      \
  GQA_ARM_ISSUE_ORDER();
  // Odd and even keys on their own pointers (vo/po: key 1, ve/pe: key 2),
  // each advanced after its last load, and a counter decremented at the
  // top, so that no load or branch waits for the add before it (ALU latency
  // 3 on the A55 model).
  const float* vo = v + v_stride;
  const float* po = pr + mp;
  const float* ve = vo + v_stride;
  const float* pe = po + mp;
  for (int64_t n = (keys - 1) / 2; n != 0;) {
    --n;
    GQA_ARM_ISSUE_HERE(n);
    GQA_PV_KEY(a, pa, b, pb, vo, po)
    vo += 2 * v_stride;
    po += 2 * mp;
    GQA_ARM_ISSUE_HERE(vo);
    GQA_ARM_ISSUE_HERE(po);
    GQA_PV_KEY(b, pb, a, pa, ve, pe)
    ve += 2 * v_stride;
    pe += 2 * mp;
    GQA_ARM_ISSUE_HERE(ve);
    GQA_ARM_ISSUE_HERE(pe);
  }
  if ((keys & 1) == 0) {  // two keys left
    GQA_PV_KEY(a, pa, b, pb, vo, po)
    GQA_PV4(0, b, pb)
    GQA_PV4(1, b, pb)
    GQA_PV4(2, b, pb)
    GQA_PV4(3, b, pb)
  } else {
    GQA_PV4(0, a, pa)
    GQA_PV4(1, a, pa)
    GQA_PV4(2, a, pa)
    GQA_PV4(3, a, pa)
  }
#undef GQA_PV_KEY
#undef GQA_PV4
}
#endif  // HWY_ARCH_ARM_A64 && HWY_TARGET == HWY_NEON

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
#if HWY_ARCH_ARM_A64 && HWY_TARGET == HWY_NEON
  PvMicroTileKeys(df, pr, mp, v, v_stride, keys, c00, c01, c02, c03, c10, c11,
                  c12, c13, c20, c21, c22, c23, c30, c31, c32, c33);
  keys = 0;  // done
#endif
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
