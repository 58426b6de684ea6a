// The SDOT (FEAT_DotProd) loops of the integer q.k (platforms/qk_int8.h)
// as inline functions, for qk_int8_arm.cc and the llvm-mca harness
// (bench/mca/): include only in a file built for armv8.2-a+dotprod.
//
// One call: one key row against up to 4 prepared query rows. q8: per 32
// elements 2 key loads and 2 loads per row feed 2 SDOT per row (16 MACs
// each), two accumulator chains per row. q4: per 64 elements 2 key loads,
// 4 nibble extractions, and per row 4 query loads, 2 start-sum loads and 4
// SDOT, the two groups' int32 sums times their f16 scales in f32.
#ifndef GQA_PLATFORMS_ARM_QK_INT8_ARM_INL_H_
#define GQA_PLATFORMS_ARM_QK_INT8_ARM_INL_H_

#include <arm_neon.h>
#include <stdint.h>
#include <string.h>

#include "platforms/qk_int8.h"

// GQA_SDOT_ORDER() / GQA_SDOT_HERE(x): the issue-order barriers of
// GQA_FHM_ORDER / _HERE (platforms/arm/f16_fml_arm-inl.h) for this file:
// no instruction; GCC keeps the source's order of loads and SDOT across
// them. Empty elsewhere.
#if defined(__GNUC__) && !defined(__clang__)
#define GQA_SDOT_ORDER() __asm__ __volatile__("")
#define GQA_SDOT_HERE(x) __asm__ __volatile__("" : "+r"(x))
#else
#define GQA_SDOT_ORDER()
#define GQA_SDOT_HERE(x)
#endif

namespace gqa {
namespace sdot {

// The f16 bit pattern at p as f32 (NaN stays NaN): FCVTL, base AArch64.
inline float HalfAt(const unsigned char* p) {
  uint16_t h;
  memcpy(&h, p, 2);
  return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

// Lane r = the sum of the lanes of a_r.
inline int32x4_t Sum4(int32x4_t a0, int32x4_t a1, int32x4_t a2, int32x4_t a3) {
  return vpaddq_s32(vpaddq_s32(a0, a1), vpaddq_s32(a2, a3));
}
inline float32x4_t Sum4(float32x4_t a0, float32x4_t a1, float32x4_t a2,
                        float32x4_t a3) {
  return vpaddq_f32(vpaddq_f32(a0, a1), vpaddq_f32(a2, a3));
}

inline int8x16_t Load(const unsigned char* p) {
  return vreinterpretq_s8_u8(vld1q_u8(p));
}

// dst[0, 4) = scale * (sum_d q_r[d] k[d]) for the NR (<= 4) prepared q8
// rows at q (q_bytes apart); lanes past NR get 0 * scale. The signed codes
// go straight into SDOT: the row's -128 * sum(c) correction (for x86's
// unsigned x signed product) is not used.
template <int NR>
inline void Q8Rows(const unsigned char* q, int64_t q_bytes,
                   const unsigned char* k, int64_t dim, float32x4_t scale,
                   float* dst) {
  // Two chains per row (a: the first 16 of each 32 elements, b: the next
  // 16), software-pipelined for the in-order cores: each SDOT is followed
  // by the load of the register it just read, for the next 32 elements,
  // so loads issue between SDOTs (GQA_SDOT_ORDER keeps that order; the
  // last step loads nothing, and nothing past the rows is read).
  int32x4_t a0 = vdupq_n_s32(0), a1 = a0, a2 = a0, a3 = a0;
  int32x4_t b0 = a0, b1 = a0, b2 = a0, b3 = a0;
  const unsigned char* c0 = q + kQkCodes;
  const unsigned char* c1 = c0 + (NR > 1 ? q_bytes : 0);
  const unsigned char* c2 = c0 + (NR > 2 ? 2 * q_bytes : 0);
  const unsigned char* c3 = c0 + (NR > 3 ? 3 * q_bytes : 0);
  int8x16_t x = Load(k), y = Load(k + 16);
  int8x16_t u0 = Load(c0), u1 = Load(c0 + 16), u2 = u0, u3 = u1, u4 = u0,
            u5 = u1, u6 = u0, u7 = u1;
  if (NR > 1) u2 = Load(c1), u3 = Load(c1 + 16);
  if (NR > 2) u4 = Load(c2), u5 = Load(c2 + 16);
  if (NR > 3) u6 = Load(c3), u7 = Load(c3 + 16);
  for (int64_t left = dim / 32 - 1; left > 0; --left) {
    k += 32, c0 += 32, c1 += 32, c2 += 32, c3 += 32;
    GQA_SDOT_HERE(k);
    // Row r: both chains, each SDOT then the reload of its q register.
#define GQA_SDOT_ROW(r, a, b, u, v, c) \
  if (NR > r) {                        \
    a = vdotq_s32(a, x, u);            \
    u = Load(c);                       \
    GQA_SDOT_ORDER();                  \
    b = vdotq_s32(b, y, v);            \
    v = Load(c + 16);                  \
    GQA_SDOT_ORDER();                  \
  }
    GQA_SDOT_ROW(0, a0, b0, u0, u1, c0)
    GQA_SDOT_ROW(1, a1, b1, u2, u3, c1)
    GQA_SDOT_ROW(2, a2, b2, u4, u5, c2)
    GQA_SDOT_ROW(3, a3, b3, u6, u7, c3)
#undef GQA_SDOT_ROW
    x = Load(k);
    y = Load(k + 16);
    GQA_SDOT_ORDER();
  }
  a0 = vdotq_s32(a0, x, u0);
  b0 = vdotq_s32(b0, y, u1);
  if (NR > 1) a1 = vdotq_s32(a1, x, u2), b1 = vdotq_s32(b1, y, u3);
  if (NR > 2) a2 = vdotq_s32(a2, x, u4), b2 = vdotq_s32(b2, y, u5);
  if (NR > 3) a3 = vdotq_s32(a3, x, u6), b3 = vdotq_s32(b3, y, u7);
  const int32x4_t sum = Sum4(vaddq_s32(a0, b0), vaddq_s32(a1, b1),
                             vaddq_s32(a2, b2), vaddq_s32(a3, b3));
  vst1q_f32(dst, vmulq_f32(vcvtq_f32_s32(sum), scale));
}

// As Q8Rows for q4 keys: per 64 elements (32 bytes; bytes 0-15 group 2c,
// 16-31 group 2c + 1), the low nibbles against the rows' q_lo and the high
// ones against q_hi, each group from its start sum (-8 * sum of its q
// codes: the nibbles are code + 8), times the group's scale in f32.
template <int NR>
inline void Q4Rows(const unsigned char* q, int64_t q_bytes,
                   const unsigned char* k, const unsigned char* k_scales,
                   int64_t dim, float32x4_t scale, float* dst) {
  const uint8x16_t low = vdupq_n_u8(0x0F);
  float32x4_t f0 = vdupq_n_f32(0.0f), f1 = f0, f2 = f0, f3 = f0;
  const unsigned char* c = q + kQkCodes + dim;         // q_lo, q_hi per chunk
  const unsigned char* init = q + kQkCodes + 2 * dim;  // 8 int32 per chunk
  for (int64_t ch = 0; ch < dim / 64; ++ch) {
    const uint8x16_t x0 = vld1q_u8(k + 32 * ch),
                     x1 = vld1q_u8(k + 32 * ch + 16);
    const int8x16_t lo0 = vreinterpretq_s8_u8(vandq_u8(x0, low));
    const int8x16_t hi0 = vreinterpretq_s8_u8(vshrq_n_u8(x0, 4));
    const int8x16_t lo1 = vreinterpretq_s8_u8(vandq_u8(x1, low));
    const int8x16_t hi1 = vreinterpretq_s8_u8(vshrq_n_u8(x1, 4));
    const float s0 = HalfAt(k_scales + 4 * ch);
    const float s1 = HalfAt(k_scales + 4 * ch + 2);
#define GQA_Q4_ROW(r, f)                                                   \
  if (NR > r) {                                                            \
    const unsigned char* cr = c + r * q_bytes + 64 * ch;                   \
    const unsigned char* st = init + r * q_bytes + 32 * ch;                \
    int32x4_t g0 = vreinterpretq_s32_u8(vld1q_u8(st));                     \
    int32x4_t g1 = vreinterpretq_s32_u8(vld1q_u8(st + 16));                \
    g0 = vdotq_s32(vdotq_s32(g0, lo0, Load(cr)), hi0, Load(cr + 32));      \
    g1 = vdotq_s32(vdotq_s32(g1, lo1, Load(cr + 16)), hi1, Load(cr + 48)); \
    f = vfmaq_n_f32(f, vcvtq_f32_s32(g0), s0);                             \
    f = vfmaq_n_f32(f, vcvtq_f32_s32(g1), s1);                             \
  }
    GQA_Q4_ROW(0, f0)
    GQA_Q4_ROW(1, f1)
    GQA_Q4_ROW(2, f2)
    GQA_Q4_ROW(3, f3)
#undef GQA_Q4_ROW
  }
  vst1q_f32(dst, vmulq_f32(Sum4(f0, f1, f2, f3), scale));
}

}  // namespace sdot
}  // namespace gqa

#endif  // GQA_PLATFORMS_ARM_QK_INT8_ARM_INL_H_
