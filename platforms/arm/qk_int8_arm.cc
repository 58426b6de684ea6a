// The AArch64 integer q.k (platforms/qk_int8.h) with SDOT (FEAT_DotProd,
// Armv8.2+: Cortex-A55, A75, A76 and later): signed int8 x int8 -> int32
// sums of 4 bytes per lane, 16 MACs an instruction. The one file built with
// -march=armv8.2-a+dotprod (CMakeLists.txt); nothing here runs unless the
// OS says the CPU has it (HWCAP_ASIMDDP).
#include "platforms/arm/qk_int8_arm.h"

#include <arm_neon.h>
#include <stdint.h>

#include "platforms/arm/hwcap.h"
#include "platforms/arm/qk_int8_arm-inl.h"
#include "platforms/qk_int8.h"

namespace gqa {
namespace {

using sdot::HalfAt;
using sdot::Q4Rows;
using sdot::Q8Rows;

template <bool kQ4>
void QkBlock(const QkInt8Block& b) {
  for (int64_t kk = 0; kk < b.keys; ++kk) {
    const unsigned char* key = b.codes + kk * b.key_bytes;
    const unsigned char* key_scales = b.scales + kk * b.scale_key_bytes;
    float* s = b.s + kk * b.slots;
    if (b.prefetch != nullptr) {
      const unsigned char* pf = b.prefetch + kk * b.prefetch_key_bytes;
      for (int64_t off = 0; off < b.prefetch_key_bytes; off += 64)
        __builtin_prefetch(pf + off);
    }
    for (int64_t g = 0; g < b.heads; ++g) {
      const unsigned char* k = key + g * b.row_bytes;
      const unsigned char* ks = key_scales + g * b.scale_row_bytes;
      // q8: s_q * s_k per row; q4: s_q (the group scales come inside).
      const float32x4_t sk = vdupq_n_f32(kQ4 ? 1.0f : HalfAt(ks));
      for (int64_t i = 0; i < b.rows; i += 4) {
        const int64_t slot = g * b.slots_per_head + i;
        const float32x4_t scale = vmulq_f32(vld1q_f32(b.q_scale + slot), sk);
        const unsigned char* q = b.q + (g * b.rows + i) * b.q_bytes;
        const int64_t n = b.rows - i;
#define GQA_QK_CASE(NR)                                      \
  if (kQ4) {                                                 \
    Q4Rows<NR>(q, b.q_bytes, k, ks, b.dim, scale, s + slot); \
  } else {                                                   \
    Q8Rows<NR>(q, b.q_bytes, k, b.dim, scale, s + slot);     \
  }
        if (n >= 4) {
          GQA_QK_CASE(4)
        } else if (n == 3) {
          GQA_QK_CASE(3)
        } else if (n == 2) {
          GQA_QK_CASE(2)
        } else {
          GQA_QK_CASE(1)
        }
#undef GQA_QK_CASE
      }
    }
  }
}

void QkQ8(const QkInt8Block& b) { QkBlock<false>(b); }
void QkQ4(const QkInt8Block& b) { QkBlock<true>(b); }

const QkInt8Kernels kNeonDotProd = {"neon_dotprod", QkQ8, QkQ4};

}  // namespace

int ArmQkInt8Kernels(const QkInt8Kernels** out, int max) {
  static const bool dp = ArmHwcapHas(kHwcapAsimdDp);
  int n = 0;
  if (dp && n < max) out[n++] = &kNeonDotProd;
  return n;
}

}  // namespace gqa
