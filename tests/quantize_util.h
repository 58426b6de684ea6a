// Test helpers of the quantization suites (test_quantize,
// test_quantize_vectors): running q8/q4 on a row and checking its codes.
#ifndef GQA_TESTS_QUANTIZE_UTIL_H_
#define GQA_TESTS_QUANTIZE_UTIL_H_

#include <stdint.h>
#include <string.h>

#include <vector>

#include "doctest/doctest.h"
#include "src/half.h"
#include "src/quantize.h"

namespace gqa {
namespace test {

inline std::vector<float> FromBits(const std::vector<uint32_t>& bits) {
  std::vector<float> x(bits.size());
  memcpy(x.data(), bits.data(), bits.size() * 4);
  return x;
}

inline uint32_t BitsOf(float f) {
  uint32_t b;
  memcpy(&b, &f, 4);
  return b;
}

struct Q8 {
  std::vector<int8_t> codes;
  uint16_t scale = 0xFFFF;
  std::vector<float> deq;
};

inline Q8 RunQ8(const std::vector<float>& x) {
  const int64_t n = static_cast<int64_t>(x.size());
  Q8 r;
  r.codes.assign(n, 99);
  r.deq.assign(n, -12345.0f);
  QuantizeRowQ8(x.data(), n, r.codes.data(), &r.scale);
  DequantizeRowQ8(r.codes.data(), r.scale, n, r.deq.data());
  return r;
}

struct Q4 {
  std::vector<uint8_t> packed;
  std::vector<uint16_t> scales;
  std::vector<float> deq;
};

inline Q4 RunQ4(const std::vector<float>& x) {
  const int64_t n = static_cast<int64_t>(x.size());
  Q4 r;
  r.packed.assign(n / 2, 0);
  r.scales.assign(n / 32, 0xFFFF);
  r.deq.assign(n, -12345.0f);
  QuantizeRowQ4(x.data(), n, r.packed.data(), r.scales.data());
  DequantizeRowQ4(r.packed.data(), r.scales.data(), n, r.deq.data());
  return r;
}

// Codes of a packed q4 row, in element order.
inline std::vector<int> Unpack(const std::vector<uint8_t>& packed) {
  std::vector<int> c(packed.size() * 2);
  for (size_t g = 0; g < packed.size() / 16; ++g) {
    for (size_t i = 0; i < 16; ++i) {
      c[g * 32 + i] = (packed[g * 16 + i] & 15) - 8;
      c[g * 32 + i + 16] = (packed[g * 16 + i] >> 4) - 8;
    }
  }
  return c;
}

inline void CheckCodes8(const Q8& r, const std::vector<int>& want) {
  REQUIRE(r.codes.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    INFO("element " << i);
    CHECK(static_cast<int>(r.codes[i]) == want[i]);
  }
}

inline void CheckCodes4(const Q4& r, const std::vector<int>& want) {
  const std::vector<int> got = Unpack(r.packed);
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    INFO("element " << i);
    CHECK(got[i] == want[i]);
  }
}

// deq[i] == code_i * d, bit for bit.
inline void CheckDeqExact8(const Q8& r) {
  const float d = HalfToFloat(r.scale);
  for (size_t i = 0; i < r.codes.size(); ++i) {
    INFO("element " << i);
    CHECK(BitsOf(r.deq[i]) == BitsOf(static_cast<float>(r.codes[i]) * d));
  }
}

}  // namespace test
}  // namespace gqa

#endif  // GQA_TESTS_QUANTIZE_UTIL_H_
