// The f16 helpers of the tests and tools: round values through binary16,
// pack float buffers as f16 or f32 bytes, widen them back; src/half.h's
// scalar conversions underneath.
#ifndef GQA_SRC_REFERENCE_F16_UTIL_H_
#define GQA_SRC_REFERENCE_F16_UTIL_H_

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <vector>

#include "src/half.h"

namespace gqa {
namespace reference {

// x rounded to the nearest binary16 (when `half`), as the f16 path sees it.
inline float RoundF16(float x) { return HalfToFloat(FloatToHalf(x)); }
inline float RoundIf(float x, bool half) { return half ? RoundF16(x) : x; }
inline void RoundAllF16(std::vector<float>* v) {
  for (float& x : *v) x = RoundF16(x);
}

// binary16 bits of each element.
inline std::vector<uint16_t> ToHalf(const std::vector<float>& v) {
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = FloatToHalf(v[i]);
  return h;
}

// Element `index` of a raw buffer of binary16 (half) or float32 elements.
inline void StoreAs(float x, bool half, unsigned char* raw, size_t index) {
  if (half) {
    const uint16_t h = FloatToHalf(x);
    memcpy(raw + 2 * index, &h, 2);
  } else {
    memcpy(raw + 4 * index, &x, 4);
  }
}

// v as raw f16 (half) or f32 bytes.
inline std::vector<unsigned char> Pack(const std::vector<float>& v, bool half) {
  std::vector<unsigned char> raw(v.size() * (half ? 2 : 4));
  for (size_t i = 0; i < v.size(); ++i) StoreAs(v[i], half, raw.data(), i);
  return raw;
}

// The first `count` elements of a raw f16 (half) or f32 buffer, as floats.
inline std::vector<float> Widen(const void* raw, size_t count, bool half) {
  std::vector<float> v(count);
  RawToFloats(raw, count, half, v.data());
  return v;
}

inline std::vector<double> ToDouble(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}

}  // namespace reference
}  // namespace gqa

#endif  // GQA_SRC_REFERENCE_F16_UTIL_H_
