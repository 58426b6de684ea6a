// The integer q.k (platforms/qk_int8.h): the query-row quantization every
// variant shares, and the choice of the variants this CPU runs.
#include "platforms/qk_int8.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#include "platforms/x86/qk_int8_x86.h"
#define GQA_QK_INT8_X86 1
#else
#define GQA_QK_INT8_X86 0
#endif
#if defined(__aarch64__)
#include "platforms/arm/qk_int8_arm.h"
#define GQA_QK_INT8_ARM 1
#else
#define GQA_QK_INT8_ARM 0
#endif

namespace gqa {
namespace {

// round_even(x * 127 / amax) clamped to [-127, 127] (x finite, |x| <=
// amax, inv = 127 / amax or 0 for amax = 0): adding and subtracting
// 1.5 * 2^23 rounds |x * inv| <= 127 to nearest even in the default
// rounding mode, with no libm call (the library builds without
// -ffast-math, and this file with -ffp-contract=off, so the compiler
// keeps the two operations: an FMA would round x * inv only once). Where 127 /
// amax overflows f32 (amax below ~3.7e-37) the product is taken in double.
inline int8_t Code(float x, float amax, float inv) {
  float r;
  if (inv <= 3.402823466e38f) {
    constexpr float m = 12582912.0f;
    r = (x * inv + m) - m;
  } else {
    constexpr double m = 6755399441055744.0;  // 1.5 * 2^52
    r = static_cast<float>(
        (static_cast<double>(x) * (127.0 / static_cast<double>(amax)) + m) - m);
  }
  r = r > 127.0f ? 127.0f : (r < -127.0f ? -127.0f : r);
  return static_cast<int8_t>(r);
}

}  // namespace

float PrepareQkInt8Row(const float* q, int64_t dim, bool q4,
                       unsigned char* dst) {
  // max|q| as the largest |q| bit pattern (monotonic for non-negative
  // floats; an integer max the compiler vectorizes): past FLT_MAX's
  // pattern means an Inf or a NaN in the row.
  uint32_t top = 0;
  for (int64_t d = 0; d < dim; ++d) {
    uint32_t u;
    memcpy(&u, q + d, 4);
    u &= 0x7fffffffu;
    top = u > top ? u : top;
  }
  const bool finite = top <= 0x7f7fffffu;
  float amax;
  memcpy(&amax, &top, 4);
  // s_q = max|q| / 127, codes round(q * 127 / max|q|) (to nearest even);
  // an all-zero row has s_q = 0 and zero codes, a NaN / Inf row s_q = NaN.
  const float s_q = !finite ? NAN : amax / 127.0f;
  const float inv = finite && amax > 0.0f ? 127.0f / amax : 0.0f;
  int8_t* codes = reinterpret_cast<int8_t*>(dst + kQkCodes);
  int32_t sum = 0;
  if (finite && inv <= 3.402823466e38f) {
    // The common row: Code's f32 branch as a plain loop (vectorized).
    constexpr float m = 12582912.0f;
    for (int64_t d = 0; d < dim; ++d) {
      float r = (q[d] * inv + m) - m;
      r = r > 127.0f ? 127.0f : (r < -127.0f ? -127.0f : r);
      const int32_t c = static_cast<int32_t>(r);
      sum += c;
      codes[d] = static_cast<int8_t>(c);  // q4 permutes them below
    }
  } else {
    for (int64_t d = 0; d < dim; ++d) {
      const int8_t c = Code(finite ? q[d] : 0.0f, amax, inv);
      sum += c;
      codes[d] = c;
    }
  }
  memcpy(dst, &s_q, 4);
  const int32_t corr = -128 * sum;
  memcpy(dst + 4, &corr, 4);
  if (!q4) return s_q;
  // q4: the codes permuted to the nibble order, and the start sums per 64
  // elements.
  unsigned char* perm = dst + kQkCodes + dim;
  unsigned char* init = dst + kQkCodes + 2 * dim;
  for (int64_t c = 0; c < dim / 64; ++c) {
    int32_t start[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t e = 0; e < 64; ++e) {
      const int64_t d = 64 * c + e;
      const int8_t code = codes[d];
      // Element e of the chunk: group e / 32, index i = e % 32 in it; low
      // nibble (i < 16) of byte 16 * group + i, else high of i - 16.
      const int64_t group = e / 32, i = e % 32;
      const int64_t half = i < 16 ? 0 : 32;
      perm[64 * c + half + 16 * group + (i % 16)] =
          static_cast<unsigned char>(code);
      start[4 * group] -= 8 * code;
    }
    memcpy(init + 32 * c, start, 32);
  }
  return s_q;
}

int AvailableQkInt8Kernels(const QkInt8Kernels** out, int max) {
#if GQA_QK_INT8_X86
  return X86QkInt8Kernels(out, max);
#elif GQA_QK_INT8_ARM
  return ArmQkInt8Kernels(out, max);
#else
  (void)out;
  (void)max;
  return 0;
#endif
}

const QkInt8Kernels* BestQkInt8Kernels() {
  static const QkInt8Kernels* const best = [] {
    const QkInt8Kernels* k[4];
    return AvailableQkInt8Kernels(k, 4) > 0 ? k[0] : nullptr;
  }();
  return best;
}

}  // namespace gqa
