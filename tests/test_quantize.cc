// q8/q4 row quantization and the fixed f32 Hadamard rotation (spec 4.2):
// hand-checked corner rows (ties to even, subnormal and zero scales,
// clamping, outliers, NaN, inf, f16 overflow, nibble order) and properties
// on random rows (the bit-exact reference vectors are in
// test_quantize_vectors.cc).
#include <math.h>
#include <string.h>

#include <random>
#include <vector>

#include "doctest/doctest.h"
#include "src/half.h"
#include "src/quantize.h"
#include "tests/quantize_util.h"

namespace gqa {
namespace test {
namespace {

TEST_CASE("q8: ties round half to even, d = 1") {
  std::vector<float> x = {127,    2.5f,    -3.5f, 0.5f, -0.5f, 1.5f,
                          126.5f, -126.5f, -2.5f, 3.5f, 0,     0,
                          0,      0,       0,     0};
  const Q8 r = RunQ8(x);
  CHECK(r.scale == 0x3C00);
  CheckCodes8(r, {127, 2, -4, 0, 0, 2, 126, -126, -2, 4, 0, 0, 0, 0, 0, 0});
  CheckDeqExact8(r);
}

TEST_CASE("q4: ties to even and the nibble order") {
  std::vector<float> x(32, 0.0f);
  x[0] = 7, x[1] = 2.5f, x[2] = -3.5f, x[3] = 6.5f, x[4] = -6.5f;
  x[5] = 0.5f, x[16] = -2.5f, x[17] = 1.5f, x[20] = 3.5f, x[31] = -7;
  const Q4 r = RunQ4(x);
  CHECK(r.scales[0] == 0x3C00);
  // Byte i: element i low, element i + 16 high, each code + 8.
  const std::vector<uint8_t> want = {(7 + 8) | ((-2 + 8) << 4),
                                     (2 + 8) | ((2 + 8) << 4),
                                     (-4 + 8) | (8 << 4),
                                     (6 + 8) | (8 << 4),
                                     (-6 + 8) | ((4 + 8) << 4),
                                     8 | (8 << 4),
                                     8 | (8 << 4),
                                     8 | (8 << 4),
                                     8 | (8 << 4),
                                     8 | (8 << 4),
                                     8 | (8 << 4),
                                     8 | (8 << 4),
                                     8 | (8 << 4),
                                     8 | (8 << 4),
                                     8 | (8 << 4),
                                     8 | ((-7 + 8) << 4)};
  CHECK(r.packed == want);
  CHECK(r.packed[0] == 0x6F);
  const std::vector<float> deq_want = {7, 2, -4, 6, -6, 0,  0, 0, 0, 0, 0,
                                       0, 0, 0,  0, 0,  -2, 2, 0, 0, 4, 0,
                                       0, 0, 0,  0, 0,  0,  0, 0, 0, -7};
  CHECK(r.deq == deq_want);
}

TEST_CASE("q4: dequantize reads the documented nibbles") {
  std::vector<uint8_t> packed(32);
  for (int i = 0; i < 32; ++i) packed[i] = static_cast<uint8_t>(i * 37 + 5);
  const std::vector<uint16_t> scales = {0x3800, 0xC000};  // 0.5, -2
  std::vector<float> out(64);
  DequantizeRowQ4(packed.data(), scales.data(), 64, out.data());
  for (int g = 0; g < 2; ++g) {
    const float d = g == 0 ? 0.5f : -2.0f;
    for (int i = 0; i < 16; ++i) {
      CHECK(out[g * 32 + i] == ((packed[g * 16 + i] & 15) - 8) * d);
      CHECK(out[g * 32 + i + 16] == ((packed[g * 16 + i] >> 4) - 8) * d);
    }
  }
}

TEST_CASE("q8/q4: zero and tiny rows get a zero scale and zero codes") {
  for (const std::vector<float>& x :
       {std::vector<float>(32, 0.0f), std::vector<float>(32, 1e-9f)}) {
    const Q8 r8 = RunQ8(x);
    CHECK(r8.scale == 0x0000);
    CheckCodes8(r8, std::vector<int>(32, 0));
    for (float v : r8.deq) CHECK(v == 0.0f);
    const Q4 r4 = RunQ4(x);
    CHECK(r4.scales[0] == 0x0000);
    CheckCodes4(r4, std::vector<int>(32, 0));
    for (float v : r4.deq) CHECK(v == 0.0f);
  }
}

TEST_CASE("q8/q4: a subnormal scale, and the clamp at +-127 / +-7") {
  const double u = ldexp(1.0, -24);  // the smallest f16 subnormal
  const Q8 r8 = RunQ8({static_cast<float>(1.4 * u * 127),
                       static_cast<float>(-0.7 * u * 127),
                       static_cast<float>(0.3 * u * 127), 0.0f});
  CHECK(r8.scale == 0x0001);
  CheckCodes8(r8, {127, -89, 38, 0});
  CheckDeqExact8(r8);
  CHECK(r8.deq[0] == static_cast<float>(127 * u));
  std::vector<float> x4(32, 0.0f);
  x4[0] = static_cast<float>(1.4 * u * 7);
  x4[1] = static_cast<float>(-0.7 * u * 7);
  x4[2] = static_cast<float>(0.3 * u * 7);
  x4[19] = static_cast<float>(-1.4 * u * 7);
  const Q4 r4 = RunQ4(x4);
  CHECK(r4.scales[0] == 0x0001);
  std::vector<int> want4(32, 0);
  want4[0] = 7, want4[1] = -5, want4[2] = 2, want4[19] = -7;
  CheckCodes4(r4, want4);
}

TEST_CASE("q8: one huge outlier, negative maximum, largest f16 scale") {
  const Q8 a = RunQ8({1000, 1, 2, -1, -4, 5, 0.5f, 3});
  CHECK(a.scale == 0x47E0);
  CheckCodes8(a, {127, 0, 0, 0, -1, 1, 0, 0});
  CheckDeqExact8(a);
  const Q8 b = RunQ8({-5, -1, -2, -3});
  CHECK(b.scale == 0x290A);
  CheckCodes8(b, {-127, -25, -51, -76});
  const Q8 c = RunQ8({65504.0f * 127, 1, -65504.0f * 127, 0});
  CHECK(c.scale == 0x7BFF);
  CheckCodes8(c, {127, 0, -127, 0});
  CheckDeqExact8(c);
}

TEST_CASE("q8/q4: NaN, inf and f16-overflowing rows dequantize to NaN") {
  const float kNan = NAN, kInf = INFINITY;
  const std::vector<std::vector<float>> rows = {
      {1, kNan, 2, 3},
      {1, kInf, -2, 3},
      {1, -kInf, -2, 3},
      {65504.0f * 127 * 1.01f, 1, -2, 0}};
  for (size_t k = 0; k < rows.size(); ++k) {
    INFO("row " << k);
    const Q8 r = RunQ8(rows[k]);
    const float d = HalfToFloat(r.scale);
    CHECK((isnan(d) || isinf(d)));
    if (k == 0) CHECK(isnan(d));
    if (k > 0) CHECK(r.scale == 0x7C00);
    CheckCodes8(r, {0, 0, 0, 0});
    for (float v : r.deq) CHECK(isnan(v));
    std::vector<float> x4(64, 0.5f);
    for (int i = 0; i < 32; ++i) x4[i] = 7.0f;
    for (size_t i = 0; i < 4; ++i) x4[40 + i] = rows[k][i];
    const Q4 r4 = RunQ4(x4);
    CHECK(r4.scales[0] == 0x3C00);  // the first group is unaffected
    CHECK(r4.deq[0] == 7.0f);
    CHECK(
        (isnan(HalfToFloat(r4.scales[1])) || isinf(HalfToFloat(r4.scales[1]))));
    for (int i = 32; i < 64; ++i) CHECK(isnan(r4.deq[i]));
  }
}

TEST_CASE("q8/q4: random rows: codes in range, error <= d/2") {
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const float amps[] = {1.0f, 1e-3f, 300.0f, 1e-7f, 2e4f};
  for (int64_t n : {1, 3, 7, 16, 31, 32, 33, 64, 96, 128, 255, 256}) {
    for (float amp : amps) {
      INFO("n " << n << " amp " << amp);
      std::vector<float> x(n);
      for (float& v : x) v = u(rng) * amp;
      if (n > 2) x[n / 2] *= 20.0f;  // an outlier
      const Q8 r8 = RunQ8(x);
      const float d8 = HalfToFloat(r8.scale);
      const bool subnormal8 = d8 < ldexpf(1.0f, -14);
      for (int64_t i = 0; i < n; ++i) {
        CHECK(r8.codes[i] >= -127);
        CHECK(r8.codes[i] <= 127);
        if (!subnormal8) CHECK(fabsf(r8.deq[i] - x[i]) <= d8 / 2);
      }
      CheckDeqExact8(r8);
      if (n % 32 != 0) continue;
      const Q4 r4 = RunQ4(x);
      for (uint8_t b : r4.packed) {
        CHECK((b & 15) >= 1);
        CHECK((b >> 4) >= 1);
      }
      for (int64_t i = 0; i < n; ++i) {
        const float d4 = HalfToFloat(r4.scales[i / 32]);
        if (d4 >= ldexpf(1.0f, -14)) CHECK(fabsf(r4.deq[i] - x[i]) <= d4 / 2);
      }
    }
  }
}

// The spec's formula written out with nearbyintf, on rows that mix exact
// ties (k + 1/2) * d, signed zeros, subnormal inputs, huge and tiny
// magnitudes. Even trials make d exact for q8 (max = 127 * unit), odd ones
// for every q4 group (max = 7 * unit).
TEST_CASE("q8/q4: codes follow clamp(nearbyint(x / d)) on tie-rich rows") {
  std::mt19937_64 rng(99);
  std::uniform_int_distribution<int> kind(0, 9);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  int ties = 0;
  for (int trial = 0; trial < 400; ++trial) {
    const int64_t n = 32 * (1 + trial % 4);
    const float unit = ldexpf(1.0f, trial % 40 - 20);
    const int qm = trial % 2 == 0 ? 127 : 7;
    std::uniform_int_distribution<int> code(-qm, qm - 1);
    std::vector<float> x(n);
    for (int64_t i = 0; i < n; ++i) {
      const int k = kind(rng);
      x[i] = k < 5   ? (code(rng) + 0.5f) * unit
             : k < 7 ? u(rng) * static_cast<float>(qm) * unit
             : k < 8 ? -0.0f
             : k < 9 ? ldexpf(u(rng), -140)  // f32 subnormal
                     : static_cast<float>(code(rng)) * unit;
      if (i % (qm == 127 ? n : 32) == 0) x[i] = qm * unit;
    }
    const auto check = [&](int64_t lo, int64_t len, float qmax, float d,
                           const std::vector<int>& got) {
      for (int64_t i = lo; i < lo + len; ++i) {
        float want = 0.0f;
        if (d != 0.0f) {
          const float r = x[i] / d;
          want = isnan(r) ? 0.0f : fminf(fmaxf(nearbyintf(r), -qmax), qmax);
          ties += r - floorf(r) == 0.5f;
        }
        INFO("trial " << trial << " element " << i << " x " << x[i]);
        CHECK(got[i] == static_cast<int>(want));
      }
    };
    const Q8 r8 = RunQ8(x);
    check(0, n, 127.0f, HalfToFloat(r8.scale),
          std::vector<int>(r8.codes.begin(), r8.codes.end()));
    const Q4 r4 = RunQ4(x);
    const std::vector<int> c4 = Unpack(r4.packed);
    for (int64_t g = 0; g < n / 32; ++g) {
      check(g * 32, 32, 7.0f, HalfToFloat(r4.scales[g]), c4);
    }
  }
  CHECK(ties > 10000);  // the rows do hold ties
}

TEST_CASE(
    "rotation: a unit vector gives the Hadamard column; twice is identity") {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int64_t n = 1; n <= 512; n *= 2) {
    INFO("n " << n);
    const float s = static_cast<float>(1.0 / sqrt(static_cast<double>(n)));
    for (int64_t k : {int64_t{0}, n / 3, n - 1}) {
      std::vector<float> e(n, 0.0f);
      e[k] = 1.0f;
      RotateRowF32(e.data(), n);
      for (int64_t j = 0; j < n; ++j) {
        const int parity =
            __builtin_popcountll(static_cast<uint64_t>(j & k)) & 1;
        CHECK(e[j] == (parity ? -s : s));
      }
    }
    std::vector<float> x(n), y;
    for (float& v : x) v = u(rng);
    y = x;
    RotateRowF32(y.data(), n);
    RotateRowF32(y.data(), n);
    for (int64_t i = 0; i < n; ++i) CHECK(fabsf(y[i] - x[i]) <= 1e-6f);
  }
  // 1/sqrt(n) as the spec fixes it: 2^(-k/2), or 0x3F3504F3 * 2^(-(k-1)/2).
  std::vector<float> one = {1.0f, 0.0f};
  RotateRowF32(one.data(), 2);
  CHECK(BitsOf(one[0]) == 0x3F3504F3u);
  std::vector<float> e8(8, 0.0f);
  e8[0] = 1.0f;
  RotateRowF32(e8.data(), 8);
  CHECK(BitsOf(e8[0]) == 0x3F3504F3u - (1u << 23));
}

}  // namespace
}  // namespace test
}  // namespace gqa
