// Micro-kernel tests, the Highway way: each register kernel of the attention
// core alone, on every compiled and supported target, sizes relative to
// Lanes (1, N-1, N, N+1, 2N+3, ...) and buffers one element off 64-byte
// alignment, against float64 sums written here; outputs are poisoned first
// and writes outside the tile fail. This file: the row loaders, the masked
// exp and the flash q.k / p.v micro-tiles (decode: *_decode.cc).
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <cmath>
#include <vector>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "tests/test_micro_kernels.cc"
#include "doctest/doctest.h"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "src/kernels/attention_common-inl.h"
#include "src/kernels/decode_micro_kernels-inl.h"
#include "src/kernels/flash_micro_kernels-inl.h"
#include "src/kernels/logit_options-inl.h"
#include "src/kernels/vector_registers-inl.h"
#include "tests/check.h"
#include "tests/micro_kernels_util.h"

HWY_BEFORE_NAMESPACE();
namespace gqa {
namespace HWY_NAMESPACE {
namespace mt = gqa::micro_test;

// Today's targets keep the tile sizes they had when the kernels listed
// target names (AVX3, AVX3_DL and all of AArch64 had the 32-register
// tiles): checked at compile time on every target this build compiles.
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL || HWY_ARCH_ARM_A64
static_assert(kVectorRegisters == 32 && kFlashTileVectors == 4 &&
                  kDecodePvRows == 8,
              "32-register tiles");
#elif HWY_TARGET == HWY_SSSE3 || HWY_TARGET == HWY_SSE4 || \
    HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_EMU128 ||  \
    HWY_TARGET == HWY_SCALAR || HWY_ARCH_ARM_V7
static_assert(kVectorRegisters <= 16 && kFlashTileVectors == 2 &&
                  kDecodePvRows == 2,
              "16-register tiles");
#endif

// RowToF32 (f32, f16), LoadRow (f32, f16) and ToF32: exact, Inf and NaN
// kept, nothing written past the row.
void TestRowLoaders() {
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  mt::Random rng;
  const uint16_t specials[] = {0x7C00, 0xFC00, 0x7E00, 0xFE01, 0x7BFF,
                               0x0001, 0x8000, 0x03FF, 0x3C00};
  for (int64_t n : mt::SizesAround(N)) {
    CAPTURE(n);
    mt::Floats src(n + N), dst(n + N);
    rng.Fill(src.data(), n + N);
    RowToF32(df, static_cast<const float*>(src.data()), dst.data(), n);
    for (int64_t i = 0; i < n; ++i) CHECK(dst[i] == src[i]);
    CHECK(dst.OnlyWritten([n](int64_t i) { return i < n; }));

    mt::Halves h(n + N);
    for (int64_t i = 0; i < n + N; ++i) {
      h[i] = (i % 5 == 3) ? specials[i % 9] : FloatToHalf(8.0f * rng.Next());
    }
    mt::Floats wide(n + N);
    RowToF32(df, static_cast<const uint16_t*>(h.data()), wide.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      const double want = mt::HalfToDouble(h[i]);
      CAPTURE(h[i]);
      if (isnan(want)) {
        CHECK(isnan(wide[i]));
      } else {
        CHECK(static_cast<double>(wide[i]) == want);
        CHECK(signbit(wide[i]) == signbit(want));
      }
    }
    CHECK(wide.OnlyWritten([n](int64_t i) { return i < n; }));

    // LoadRow: N lanes from an unaligned row, f32 and f16.
    mt::Floats lanes(N);
    hn::StoreU(LoadRow(df, static_cast<const float*>(src.data() + n)), df,
               lanes.data());
    for (int64_t i = 0; i < N; ++i) CHECK(lanes[i] == src[n + i]);
    hn::StoreU(LoadRow(df, static_cast<const uint16_t*>(h.data() + n)), df,
               lanes.data());
    for (int64_t i = 0; i < N; ++i) {
      const double want = mt::HalfToDouble(h[n + i]);
      CHECK((isnan(want) ? isnan(lanes[i]) : lanes[i] == want));
    }
  }
  CHECK(ToF32<float>(-2.5f) == -2.5f);
  CHECK(ToF32<uint16_t>(0xC100) == -2.5f);
  CHECK(isnan(ToF32<uint16_t>(0x7E00)));
}

// ExpKeepNaN: exp to f32 accuracy on [-104, 88], 0 below -104 (and for
// -inf), NaN kept.
void TestExpKeepNaN() {
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  // ARMv7 NEON flushes denormal results to 0: there, and only there, a
  // denormal exp may come out 0.
  const bool flushes =
      hn::GetLane(hn::Mul(hn::Set(df, 1e-30f), hn::Set(df, 1e-10f))) == 0.0f;
  // Appends (got, exp(x)) for the closeness check, or checks a flushed 0.
  auto expect = [flushes](float x, float y, std::vector<float>* got,
                          std::vector<double>* want) {
    const double e = exp(static_cast<double>(x));
    if (flushes && e < 1.17549435e-38 && y == 0.0f) return;
    got->push_back(y);
    want->push_back(e);
  };
  for (int64_t n : mt::SizesAround(N)) {
    CAPTURE(n);
    const int64_t padded = RoundUp(n, N) + 2 * N;
    mt::Floats x(padded), y(padded);
    std::vector<float> got;
    std::vector<double> want;
    for (int64_t i = 0; i < padded; ++i) {
      // A sweep of [-110, 88] with the special values mixed in.
      x[i] = -110.0f +
             198.0f * static_cast<float>(i) / static_cast<float>(padded - 1);
      if (i % 7 == 2) x[i] = -INFINITY;
      if (i % 7 == 4) x[i] = NAN;
      if (i % 11 == 5) x[i] = 0.0f;
    }
    for (int64_t i = 0; i < n; i += N) {
      hn::StoreU(ExpKeepNaN(df, hn::LoadU(df, x.data() + i)), df, y.data() + i);
    }
    for (int64_t i = 0; i < RoundUp(n, N); ++i) {
      CAPTURE(x[i]);
      if (isnan(x[i])) {
        CHECK(isnan(y[i]));
      } else if (x[i] < -104.0f) {
        CHECK(y[i] == 0.0f);
      } else {
        expect(x[i], y[i], &got, &want);
      }
    }
    test::CheckClose(got, want, 2e-6, 3e-45, "exp");
  }
  // Where exp is denormal or near the cut, then a few ordinary values.
  const float probes[] = {-103.9f, -103.0f, -101.0f, -99.0f, -95.0f,
                          -90.0f,  -87.5f,  -87.0f,  -50.0f, -1e-7f,
                          1e-7f,   1.0f,    10.0f,   88.0f};
  const int64_t count = 14, padded = RoundUp(count, N);
  mt::Floats x(padded), y(padded);
  for (int64_t i = 0; i < padded; ++i) x[i] = probes[i % count];
  for (int64_t i = 0; i < padded; i += N) {
    hn::StoreU(ExpKeepNaN(df, hn::LoadU(df, x.data() + i)), df, y.data() + i);
  }
  std::vector<float> got;
  std::vector<double> want;
  for (int64_t i = 0; i < count; ++i) expect(x[i], y[i], &got, &want);
  test::CheckClose(got, want, 2e-6, 3e-45, "exp probes");
}

// QkMicroTile: s[j][m0 + i] = sum_d kt[j][d] qt[d][m0 + i], 4 keys x
// kFlashTileVectors vectors, any head dim.
void TestFlashQk() {
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int64_t width = kFlashTileVectors * N;
  mt::Random rng;
  for (int64_t dim : mt::SizesAround(N)) {
    for (int64_t j0 : {0, 4}) {
      for (int64_t m0 : {int64_t{0}, width}) {
        INFO("dim " << dim << " j0 " << j0 << " m0 " << m0);
        const int64_t mp = 2 * width + 1, k_stride = dim + 3;
        mt::Floats qt(dim * mp), kt((j0 + 4) * k_stride), s((j0 + 4) * mp);
        rng.Fill(qt.data(), dim * mp);
        rng.Fill(kt.data(), (j0 + 4) * k_stride);
        QkMicroTile(df, qt.data(), mp, kt.data(), k_stride, dim, s.data(), j0,
                    m0);
        std::vector<float> got;
        std::vector<double> want;
        for (int64_t j = j0; j < j0 + 4; ++j) {
          for (int64_t i = 0; i < width; ++i) {
            double sum = 0.0;
            for (int64_t d = 0; d < dim; ++d)
              sum += static_cast<double>(kt[j * k_stride + d]) *
                     qt[d * mp + m0 + i];
            got.push_back(s[j * mp + m0 + i]);
            want.push_back(sum);
          }
        }
        test::CheckClose(got, want, 1e-5, 1e-5, "flash q.k");
        CHECK(s.OnlyWritten([&](int64_t e) {
          const int64_t j = e / mp, m = e % mp;
          return j >= j0 && m >= m0 && m < m0 + width;
        }));
      }
    }
  }
}

// PvMicroTile: o[m][d0 + i] = o * alpha[m] + sum_j s[j][m] vt[j][d0 + i]
// for 4 rows, with and without alpha, any number of keys.
void TestFlashPv() {
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int64_t width = kFlashTileVectors * N;
  mt::Random rng;
  std::vector<int64_t> key_counts = mt::SizesAround(N);
  key_counts.push_back(128);
  for (int64_t keys : key_counts) {
    for (int64_t d0 : {int64_t{0}, width}) {
      for (bool rescale : {false, true}) {
        INFO("keys " << keys << " d0 " << d0 << " rescale " << rescale);
        const int64_t m0 = 4, mp = 8 + 1, v_stride = 2 * width + 3;
        const int64_t dp = 2 * width + 1, rows = m0 + 4;
        mt::Floats s(keys * mp), vt(keys * v_stride), o(rows * dp), alpha(mp);
        for (int64_t e = 0; e < keys * mp; ++e) s[e] = rng.Unit();
        rng.Fill(vt.data(), keys * v_stride);
        rng.Fill(alpha.data(), mp);
        std::vector<float> before(static_cast<size_t>(rows * dp));
        for (int64_t m = m0; m < rows; ++m) {
          for (int64_t i = 0; i < width; ++i) o[m * dp + d0 + i] = rng.Next();
        }
        for (int64_t e = 0; e < rows * dp; ++e) before[e] = o[e];
        PvMicroTile(df, s.data(), mp, vt.data(), v_stride, keys, o.data(), dp,
                    m0, d0, rescale ? alpha.data() : nullptr);
        std::vector<float> got;
        std::vector<double> want;
        for (int64_t m = m0; m < rows; ++m) {
          for (int64_t i = 0; i < width; ++i) {
            double sum = static_cast<double>(before[m * dp + d0 + i]) *
                         (rescale ? alpha[m] : 1.0f);
            for (int64_t j = 0; j < keys; ++j)
              sum += static_cast<double>(s[j * mp + m]) *
                     vt[j * v_stride + d0 + i];
            got.push_back(o[m * dp + d0 + i]);
            want.push_back(sum);
          }
        }
        test::CheckClose(got, want, 1e-5, 1e-5, "flash p.v");
        CHECK(o.OnlyWritten([&](int64_t e) {
          const int64_t m = e / dp, d = e % dp;
          return m >= m0 && d >= d0 && d < d0 + width;
        }));
      }
    }
  }
}

// The softcap c * tanh(x / c) (Softcap, logit_options-inl.h) against
// float64 for c folded into the coefficients (1, 50, 1e-3, 3000, 2^20) and
// not (2^-21, 1e25): within 8 ulp of the result (5.5 measured on the x86
// targets; ARMv7 divides by Newton steps) on a dense grid of x / c in
// [-12, 12] and at tiny and subnormal x (ARMv7 NEON flushes those to 0);
// |result| <= c, +-inf -> +-c within 8 ulp (exactly for c = 1); NaN kept.
void TestSoftcapTanh() {
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  for (const float c :
       {1.0f, 50.0f, 1e-3f, 3000.0f, 0x1p20f, 0x1p-21f, 1e25f}) {
    CAPTURE(c);
    std::vector<float> xs;
    for (int i = -240000; i <= 240000; ++i) xs.push_back(i * 5e-5f * c);
    for (float x : {1e-30f, -1e-38f, 1e-44f, 3e-8f * c, 9.0f * c, 9.5f * c,
                    1e30f, -1e30f, INFINITY, -INFINITY, NAN}) {
      xs.push_back(x);
    }
    while (static_cast<int64_t>(xs.size()) % N != 0) xs.push_back(0.0f);
    const SoftcapConsts k = MakeSoftcap(c);
    std::vector<float> got(xs.size());
    for (size_t i = 0; i < xs.size(); i += static_cast<size_t>(N)) {
      hn::StoreU(Softcap(df, hn::LoadU(df, xs.data() + i), k), df,
                 got.data() + i);
    }
    double worst = 0;
    for (size_t i = 0; i < xs.size(); ++i) {
      const double x = xs[i], want = c * std::tanh(x / c), y = got[i];
      if (std::isnan(x)) {
        CHECK(std::isnan(y));
        continue;
      }
      REQUIRE(std::fabs(y) <= c);
      if (std::isinf(x) && c == 1.0f) CHECK(y == (x > 0 ? 1.0 : -1.0));
      if (x == 0) {
        CHECK(y == 0);
        continue;
      }
#if HWY_ARCH_ARM_V7
      // ARMv7 NEON flushes subnormal inputs and results to zero.
      if ((std::fabs(x) < FLT_MIN || std::fabs(want) < FLT_MIN) && y == 0)
        continue;
#endif
      if (std::fabs(want) < FLT_MIN) {
        // Subnormal results: within 8 ulp of the smallest normal's.
        CHECK(std::fabs(y - want) <= 8 * std::ldexp(1.0, -149));
        continue;
      }
      const double ulp = std::ldexp(1.0, std::ilogb(want) - 23);
      worst = std::max(worst, std::fabs(y - want) / ulp);
    }
    CAPTURE(worst);
    CHECK(worst <= 8.0);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace gqa
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace gqa {
HWY_EXPORT(TestRowLoaders);
HWY_EXPORT(TestExpKeepNaN);
HWY_EXPORT(TestFlashQk);
HWY_EXPORT(TestFlashPv);
HWY_EXPORT(TestSoftcapTanh);

namespace micro_test {

TEST_CASE("micro: f16/f32 row loaders, every target") {
  OnEveryTarget([] { HWY_DYNAMIC_DISPATCH(TestRowLoaders)(); });
}
TEST_CASE("micro: masked exp (ExpKeepNaN), every target") {
  OnEveryTarget([] { HWY_DYNAMIC_DISPATCH(TestExpKeepNaN)(); });
}
TEST_CASE("micro: flash q.k micro-tile, every target") {
  OnEveryTarget([] { HWY_DYNAMIC_DISPATCH(TestFlashQk)(); });
}
TEST_CASE("micro: flash p.v micro-tile, every target") {
  OnEveryTarget([] { HWY_DYNAMIC_DISPATCH(TestFlashPv)(); });
}
TEST_CASE("micro: the softcap's tanh, every target") {
  OnEveryTarget([] { HWY_DYNAMIC_DISPATCH(TestSoftcapTanh)(); });
}

}  // namespace micro_test
}  // namespace gqa
#endif  // HWY_ONCE
