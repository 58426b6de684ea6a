// Micro-kernel tests of the decode kernel, the Highway way (as
// tests/test_micro_kernels.cc): the q.k tile pairs, the quad reduction and
// the p.v rows alone, on every compiled and supported target.
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <vector>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "tests/test_micro_kernels_decode.cc"
#include "doctest/doctest.h"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "src/kernels/attention_common-inl.h"
#include "src/kernels/decode_micro_kernels-inl.h"
#include "tests/check.h"
#include "tests/micro_kernels_util.h"

HWY_BEFORE_NAMESPACE();
namespace gqa {
namespace HWY_NAMESPACE {
namespace mt = gqa::micro_test;

// The sum of row r's partial sums in a stored quad.
HWY_INLINE double QuadRowSum(const float* quad, int64_t N, int64_t r) {
  const int64_t partials = N >= 4 ? N / 4 : 1;
  double sum = 0.0;
  for (int64_t k = 0; k < partials; ++k) sum += quad[r * partials + k];
  return sum;
}

// QkTiles for every tile pair it serves: quads of tile A (rows_a query
// rows against key row ka) and B (rows_b against kb), rows past a tile's
// rows 0; f32 and f16 keys; the prefetch pointer advanced by
// pf_lines lines per vector of the head dim.
template <typename T>
void TestDecodeQkTyped() {
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int64_t quad_floats = N > 4 ? N : 4;
  const int pairs[][2] = {{4, 4}, {4, 3}, {4, 2}, {4, 1}, {4, 0},
                          {3, 4}, {2, 4}, {1, 4}, {3, 3}, {2, 2},
                          {1, 1}, {3, 0}, {2, 0}, {1, 0}};
  mt::Random rng;
  for (int64_t nv : {1, 2, 3, 5}) {
    for (const auto& pair : pairs) {
      for (bool same_row : {false, true}) {
        const int ra = pair[0], rb = pair[1];
        INFO("nv " << nv << " ra " << ra << " rb " << rb << " same_row "
                   << same_row);
        const int64_t dim = nv * N, q_stride = dim + 1;
        mt::Floats qa(4 * q_stride), qb(4 * q_stride);
        rng.Fill(qa.data(), 4 * q_stride);
        rng.Fill(qb.data(), 4 * q_stride);
        mt::Floats kf(2 * dim + 1);
        rng.Fill(kf.data(), 2 * dim + 1);
        std::vector<T> k_storage(static_cast<size_t>(2 * dim + 2));
        T* k = k_storage.data() + 1;  // one element off alignment
        std::vector<double> kd(static_cast<size_t>(2 * dim));
        for (int64_t i = 0; i < 2 * dim; ++i)
          mt::StoreElement(kf[i], &k[i], &kd[i]);
        const T* ka = k;
        const T* kb = same_row ? k : k + dim;
        const double* kbd = kd.data() + (same_row ? 0 : dim);
        mt::Floats dst(2 * quad_floats);
        std::vector<unsigned char> lines(static_cast<size_t>(nv) * 2 * 64);
        for (int pf_lines : {0, 2}) {
          const unsigned char* pf = lines.data();
          QkTiles(df, ra, rb, qa.data(), qb.data(), q_stride, ka, kb, nv,
                  dst.data(), dst.data() + quad_floats, pf, pf_lines);
          CHECK(pf == lines.data() + nv * pf_lines * 64);
          std::vector<float> got;
          std::vector<double> want;
          for (int tile = 0; tile < 2; ++tile) {
            const int rows = tile == 0 ? ra : rb;
            if (rows == 0) continue;
            const float* q = tile == 0 ? qa.data() : qb.data();
            const double* kr = tile == 0 ? kd.data() : kbd;
            for (int r = 0; r < 4; ++r) {
              double sum = 0.0;
              for (int64_t i = 0; r < rows && i < dim; ++i)
                sum += static_cast<double>(q[r * q_stride + i]) * kr[i];
              got.push_back(static_cast<float>(
                  QuadRowSum(dst.data() + tile * quad_floats, N, r)));
              want.push_back(sum);
            }
          }
          test::CheckClose(got, want, 1e-5, 1e-5, "decode q.k");
          if (rb == 0) {
            CHECK(dst.OnlyWritten([&](int64_t e) { return e < quad_floats; }));
          }
        }
      }
    }
  }
}

void TestDecodeQk() {
  TestDecodeQkTyped<float>();
  TestDecodeQkTyped<uint16_t>();
}

// QkTileKeys (aarch64's decode q.k: one tile against 4 neighbouring keys)
// gives, key by key, the same quads bit for bit as QkTiles on that key
// alone, and advances the prefetch pointer as QkTiles does.
template <typename T>
void TestDecodeQkFourKeysTyped() {
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int64_t quad_floats = N > 4 ? N : 4;
  mt::Random rng;
  for (int64_t nv : {1, 2, 3, 5}) {
    for (int64_t rows = 1; rows <= 4; ++rows) {
      INFO("nv " << nv << " rows " << rows);
      const int64_t dim = nv * N, q_stride = dim + 1, ks = dim + 3;
      mt::Floats q(4 * q_stride);
      rng.Fill(q.data(), 4 * q_stride);
      mt::Floats kf(4 * ks);
      rng.Fill(kf.data(), 4 * ks);
      std::vector<T> k_storage(static_cast<size_t>(4 * ks + 1));
      T* k = k_storage.data() + 1;  // one element off alignment
      std::vector<double> kd(static_cast<size_t>(4 * ks));
      for (int64_t i = 0; i < 4 * ks; ++i)
        mt::StoreElement(kf[i], &k[i], &kd[i]);
      const int64_t dst_key_stride = 2 * quad_floats + 1;
      mt::Floats dst(4 * dst_key_stride), one(2 * quad_floats);
      std::vector<unsigned char> lines(static_cast<size_t>(nv) * 2 * 64);
      for (int pf_lines : {0, 2}) {
        const unsigned char* pf = lines.data();
        QkTileKeys(df, rows, q.data(), q_stride, k, ks, nv, dst.data(),
                   dst_key_stride, pf, pf_lines);
        CHECK(pf == lines.data() + nv * pf_lines * 64);
        for (int64_t e = 0; e < 4; ++e) {
          const unsigned char* pf1 = lines.data();
          QkTiles(df, rows, 0, q.data(), q.data(), q_stride, k + e * ks,
                  k + e * ks, nv, one.data(), one.data() + quad_floats, pf1, 0);
          CHECK(memcmp(dst.data() + e * dst_key_stride, one.data(),
                       sizeof(float) * static_cast<size_t>(quad_floats)) == 0);
        }
      }
      CHECK(dst.OnlyWritten(
          [&](int64_t i) { return i % dst_key_stride < quad_floats; }));
    }
  }
}

void TestDecodeQkFourKeys() {
  TestDecodeQkFourKeysTyped<float>();
  TestDecodeQkFourKeysTyped<uint16_t>();
}

// ReduceQuads: lane i of slot vector c = the sum of slot c*N+i's partials.
void TestReduceQuads() {
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int64_t quad_floats = N > 4 ? N : 4;
  const int64_t per_vector = N >= 4 ? N / 4 : 1;
  mt::Random rng;
  for (int64_t tiles : {1, 2, 5}) {
    CAPTURE(tiles);
    const int64_t quads = RoundUp(tiles, per_vector), slots = 4 * quads;
    mt::Floats src(quads * quad_floats), out(slots);
    rng.Fill(src.data(), quads * quad_floats);
    std::vector<float> got;
    std::vector<double> want;
    for (int64_t c = 0; c < slots / N; ++c) {
      mt::Floats work(quads * quad_floats);  // ReduceQuads may fold in place
      memcpy(work.data(), src.data(),
             static_cast<size_t>(quads * quad_floats) * 4);
      hn::StoreU(ReduceQuads(df, work.data(), c), df, out.data() + c * N);
      for (int64_t i = 0; i < N; ++i) {
        const int64_t slot = c * N + i;
        got.push_back(out[slot]);
        want.push_back(
            QuadRowSum(src.data() + slot / 4 * quad_floats, N, slot % 4));
      }
    }
    test::CheckClose(got, want, 1e-6, 1e-6, "reduce quads");
  }
}

// PvRows for 1..kDecodePvRows rows: acc[r][d] = acc * alpha[r] + sum_jj
// p[jj][r] v[jj][d]; f32 and f16 values; head dims of 1..9 vectors (the
// 4- and 2-vector chunks and the single-vector tail).
template <typename T>
void TestDecodePvTyped() {
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  mt::Random rng;
  for (int64_t nv : {1, 2, 3, 4, 5, 9}) {
    for (int64_t keys : {int64_t{1}, int64_t{3}, N + 1, int64_t{64}}) {
      for (int64_t rows = 1; rows <= kDecodePvRows; ++rows) {
        INFO("nv " << nv << " keys " << keys << " rows " << rows);
        const int64_t Dp = nv * N, key_stride = Dp + 1, p_stride = rows + 3;
        mt::Floats pr(keys * p_stride), alpha(rows), acc(rows * Dp + N);
        for (int64_t e = 0; e < keys * p_stride; ++e) pr[e] = rng.Unit();
        rng.Fill(alpha.data(), rows);
        rng.Fill(acc.data(), rows * Dp);
        std::vector<float> before(acc.data(), acc.data() + rows * Dp);
        std::vector<T> v_storage(static_cast<size_t>(keys * key_stride + 1));
        T* v = v_storage.data() + 1;
        std::vector<double> vd(static_cast<size_t>(keys * key_stride));
        for (int64_t e = 0; e < keys * key_stride; ++e)
          mt::StoreElement(rng.Next(), &v[e], &vd[e]);
        PvRows(df, rows, pr.data(), p_stride, alpha.data(), v, key_stride,
               nullptr, 0, keys, acc.data(), Dp);
        std::vector<float> got;
        std::vector<double> want;
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t d = 0; d < Dp; ++d) {
            double sum = static_cast<double>(before[r * Dp + d]) * alpha[r];
            for (int64_t jj = 0; jj < keys; ++jj)
              sum += static_cast<double>(pr[jj * p_stride + r]) *
                     vd[jj * key_stride + d];
            got.push_back(acc[r * Dp + d]);
            want.push_back(sum);
          }
        }
        test::CheckClose(got, want, 1e-5, 1e-5, "decode p.v");
        for (int64_t e = rows * Dp; e < rows * Dp + N; ++e)
          CHECK(acc[e] == mt::kPoison);
      }
    }
  }
}

void TestDecodePv() {
  TestDecodePvTyped<float>();
  TestDecodePvTyped<uint16_t>();
}

}  // namespace HWY_NAMESPACE
}  // namespace gqa
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace gqa {
HWY_EXPORT(TestDecodeQk);
HWY_EXPORT(TestDecodeQkFourKeys);
HWY_EXPORT(TestReduceQuads);
HWY_EXPORT(TestDecodePv);

namespace micro_test {

TEST_CASE("micro: decode q.k tile pairs, every target") {
  OnEveryTarget([] { HWY_DYNAMIC_DISPATCH(TestDecodeQk)(); });
}
TEST_CASE("micro: decode q.k one tile x 4 keys, every target") {
  OnEveryTarget([] { HWY_DYNAMIC_DISPATCH(TestDecodeQkFourKeys)(); });
}
TEST_CASE("micro: decode quad reduction, every target") {
  OnEveryTarget([] { HWY_DYNAMIC_DISPATCH(TestReduceQuads)(); });
}
TEST_CASE("micro: decode p.v rows, every target") {
  OnEveryTarget([] { HWY_DYNAMIC_DISPATCH(TestDecodePv)(); });
}

}  // namespace micro_test
}  // namespace gqa
#endif  // HWY_ONCE
