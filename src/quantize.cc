// Exact q8/q4 quantization and the fixed f32 Hadamard rotation of KV cache
// rows (spec 4.2). Plain loops the compiler vectorises: the append path runs
// them once per (token, kv head) row, and their results must equal the numpy
// reference bit for bit, so every step is one IEEE f32 operation in the
// order the spec gives (no reassociation, no FMA: the only products are
// exact or stand alone).
#include "src/quantize.h"

#include <math.h>
#include <string.h>

#include "src/half.h"

namespace gqa {
namespace {

inline uint32_t BitsOf(float f) {
  uint32_t b;
  memcpy(&b, &f, sizeof(b));
  return b;
}

inline float FloatOf(uint32_t b) {
  float f;
  memcpy(&f, &b, sizeof(f));
  return f;
}

constexpr uint32_t kAbsMask = 0x7FFFFFFFu;
constexpr uint32_t kInfBits = 0x7F800000u;

// max|x_i| over n elements in f32; NaN when any element is NaN (numpy's max
// propagates NaN). On the bits: |x| as an integer orders as |x| does, and
// every NaN lies above infinity. Integer max vectorises; a float compare
// (which may trap) does not.
float MaxAbs(const float* x, int64_t n) {
  uint32_t m = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t a = BitsOf(x[i]) & kAbsMask;
    m = a > m ? a : m;
  }
  return m > kInfBits ? NAN : FloatOf(m);
}

// Codes of n elements with the scale d: clamp(rne(x_i / d), -qmax, qmax),
// 0 where x_i / d is NaN; all 0 when d == 0. The clamp goes first (the
// bounds are integers, so clamp and round commute) and works on the bits as
// MaxAbs does: a NaN's magnitude becomes 0, any other is capped at qmax's.
// Then, for |r| <= 127, adding and subtracting 1.5 * 2^23 rounds to the
// nearest integer, ties to even, in the default rounding mode (the result of
// rintf / nearbyintf, in a form the compiler vectorises).
template <typename Code>
void QuantizeWithScale(const float* x, int64_t n, float d, float qmax,
                       Code* codes) {
  if (d == 0.0f) {
    for (int64_t i = 0; i < n; ++i) codes[i] = 0;
    return;
  }
  const uint32_t qmax_bits = BitsOf(qmax);
  const float kRound = 12582912.0f;  // 1.5 * 2^23
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t r = BitsOf(x[i] / d);
    uint32_t mag = r & kAbsMask;
    mag = mag > kInfBits ? 0u : mag;
    mag = mag > qmax_bits ? qmax_bits : mag;
    const float clamped = FloatOf((r & ~kAbsMask) | mag);
    const float rounded = (clamped + kRound) - kRound;
    codes[i] = static_cast<Code>(static_cast<int32_t>(rounded));
  }
}

// s16 = f16(a / qmax) (f32 division, RNE, overflow to inf); returns d.
float ScaleOf(const float* x, int64_t n, float qmax, uint16_t* s16) {
  const float a = MaxAbs(x, n);
  *s16 = FloatToHalf(a / qmax);
  return HalfToFloat(*s16);
}

}  // namespace

void RotateRowF32(float* x, int64_t n) {
  for (int64_t h = 1; h < n; h *= 2) {
    for (int64_t base = 0; base < n; base += 2 * h) {
      float* lo = x + base;
      float* hi = x + base + h;
      for (int64_t j = 0; j < h; ++j) {
        const float a = lo[j];
        const float b = hi[j];
        lo[j] = a + b;
        hi[j] = a - b;
      }
    }
  }
  const float s = static_cast<float>(1.0 / sqrt(static_cast<double>(n)));
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

void QuantizeRowQ8(const float* x, int64_t n, int8_t* codes, uint16_t* scale) {
  const float d = ScaleOf(x, n, 127.0f, scale);
  QuantizeWithScale(x, n, d, 127.0f, codes);
}

void QuantizeRowQ4(const float* x, int64_t n, uint8_t* packed,
                   uint16_t* scales) {
  for (int64_t g = 0; g < n / kQ4GroupSize; ++g) {
    const float* xg = x + g * kQ4GroupSize;
    const float d = ScaleOf(xg, kQ4GroupSize, 7.0f, &scales[g]);
    int8_t q[kQ4GroupSize];
    QuantizeWithScale(xg, kQ4GroupSize, d, 7.0f, q);
    uint8_t* pg = packed + g * (kQ4GroupSize / 2);
    for (int64_t i = 0; i < kQ4GroupSize / 2; ++i) {
      pg[i] = static_cast<uint8_t>((q[i] + 8) | ((q[i + 16] + 8) << 4));
    }
  }
}

void DequantizeRowQ8(const int8_t* codes, uint16_t scale, int64_t n,
                     float* out) {
  const float d = HalfToFloat(scale);
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(codes[i]) * d;
}

void DequantizeRowQ4(const uint8_t* packed, const uint16_t* scales, int64_t n,
                     float* out) {
  for (int64_t g = 0; g < n / kQ4GroupSize; ++g) {
    const float d = HalfToFloat(scales[g]);
    const uint8_t* pg = packed + g * (kQ4GroupSize / 2);
    float* og = out + g * kQ4GroupSize;
    for (int64_t i = 0; i < kQ4GroupSize / 2; ++i) {
      og[i] = static_cast<float>((pg[i] & 15) - 8) * d;
      og[i + 16] = static_cast<float>((pg[i] >> 4) - 8) * d;
    }
  }
}

}  // namespace gqa
