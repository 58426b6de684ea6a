// Scalar IEEE binary16 <-> binary32 conversion (round to nearest even), for
// the few places that convert single values: scores rows, tests, tools.
// Vector code converts with Highway's PromoteTo/DemoteTo instead.
#ifndef GQA_SRC_HALF_H_
#define GQA_SRC_HALF_H_

#include <stddef.h>
#include <stdint.h>
#include <string.h>

namespace gqa {

inline float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t mant = h & 0x3FFu;
  uint32_t bits;
  if (exp == 0x1F) {  // inf / nan
    bits = sign | 0x7F800000u | (mant << 13);
  } else if (exp != 0) {  // normal
    bits = sign | ((exp + 112u) << 23) | (mant << 13);
  } else if (mant == 0) {  // signed zero
    bits = sign;
  } else {  // subnormal: normalise
    uint32_t e = 113;
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      --e;
    }
    bits = sign | (e << 23) | ((mant & 0x3FFu) << 13);
  }
  float f;
  memcpy(&f, &bits, sizeof(f));
  return f;
}

inline uint16_t FloatToHalf(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof(x));
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t abs = x & 0x7FFFFFFFu;
  if (abs >= 0x7F800000u) {  // inf or nan (keep nan quiet)
    return static_cast<uint16_t>(sign | 0x7C00u |
                                 (abs > 0x7F800000u ? 0x200u : 0u));
  }
  if (abs >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);
  if (abs < 0x38800000u) {  // result is subnormal or zero
    // value = abs_float; half subnormal unit = 2^-24.
    const uint32_t e = abs >> 23;
    if (e < 102) return sign;  // < 2^-25: rounds to zero
    const uint32_t mant = (abs & 0x7FFFFFu) | 0x800000u;
    const uint32_t shift = 126 - e;  // 14..24
    uint32_t h = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1u))) ++h;
    return static_cast<uint16_t>(sign | h);
  }
  // normal: rebias exponent, round mantissa to 10 bits (carry may bump exp)
  uint32_t h = ((abs >> 13) - (112u << 10));
  const uint32_t rem = abs & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
}

// dst[i] = element i of `raw`: binary16 bits when `half`, else float32.
inline void RawToFloats(const void* raw, size_t count, bool half, float* dst) {
  const unsigned char* bytes = static_cast<const unsigned char*>(raw);
  for (size_t i = 0; i < count; ++i) {
    if (half) {
      uint16_t h;
      memcpy(&h, bytes + 2 * i, 2);
      dst[i] = HalfToFloat(h);
    } else {
      memcpy(&dst[i], bytes + 4 * i, 4);
    }
  }
}

}  // namespace gqa

#endif  // GQA_SRC_HALF_H_
