// The integer q.k (platforms/qk_int8.h): each variant the CPU runs against
// exact integer sums of the same int8 q rows and q8 / q4 key codes, and the
// decode kernel with AttentionParams::qk_int8 against the float64
// reference on the emulated int8 q (tests/blocked_core_case.h). Skipped,
// with a message, on CPUs without an integer dot product.
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <random>
#include <vector>

#include "doctest/doctest.h"
#include "platforms/qk_int8.h"
#include "src/half.h"
#include "tests/blocked_core_case.h"

namespace gqa {
namespace test {
namespace {

// Emulated codes of a prepared row (the rule of platforms/qk_int8.h).
std::vector<int> Codes(const float* q, int64_t D, float* s_q) {
  float amax = 0.0f;
  for (int64_t d = 0; d < D; ++d) amax = std::max(amax, fabsf(q[d]));
  *s_q = amax / 127.0f;
  const float inv = amax > 0 ? 127.0f / amax : 0.0f;
  std::vector<int> c(static_cast<size_t>(D));
  for (int64_t d = 0; d < D; ++d)
    c[d] = static_cast<int>(
        std::min(127.0f, std::max(-127.0f, nearbyintf(q[d] * inv))));
  return c;
}

TEST_CASE("integer q.k kernels: every variant, q8 and q4, against exact sums") {
  const QkInt8Kernels* ks[4];
  const int n = AvailableQkInt8Kernels(ks, 4);
  if (n == 0) {
    MESSAGE("no integer dot product on this CPU: skipped");
    return;
  }
  std::mt19937 rng(5);
  std::normal_distribution<float> nq(0.0f, 1.0f);
  std::uniform_int_distribution<int> c8(-127, 127), c4(0, 15);
  std::uniform_real_distribution<float> us(0.001f, 0.05f);
  for (int v = 0; v < n; ++v)
    for (bool q4 : {false, true})
      for (int64_t D : {32, 64, 96, 128, 256})
        for (int64_t rows : {1, 3, 4, 7}) {
          if (!QkInt8ServesDim(q4, D)) continue;  // q4: multiples of 64
          INFO(ks[v]->name << " q4 " << q4 << " D " << D << " rows " << rows);
          const int64_t H = 3, keys = 5, sph = (rows + 3) / 4 * 4;
          const int64_t slots = H * sph + 4;
          const int64_t qb = QkInt8PreparedBytes(D);
          std::vector<float> q(static_cast<size_t>(H * rows * D));
          for (float& x : q) x = nq(rng);
          q[3] *= 20.0f;  // an outlier: a coarse s_q for its row
          std::vector<unsigned char> prep(static_cast<size_t>(H * rows * qb));
          std::vector<float> qscale(static_cast<size_t>(slots), 0.0f);
          for (int64_t r = 0; r < H * rows; ++r) {
            qscale[(r / rows) * sph + r % rows] =
                PrepareQkInt8Row(q.data() + r * D, D, q4, prep.data() + r * qb);
          }
          const int64_t rb = q4 ? D / 2 : D, rs = q4 ? D / 32 : 1;
          std::vector<unsigned char> codes(static_cast<size_t>(keys * H * rb));
          std::vector<uint16_t> scales(static_cast<size_t>(keys * H * rs));
          for (unsigned char& c : codes)
            c = q4 ? static_cast<unsigned char>(c4(rng) | (c4(rng) << 4))
                   : static_cast<unsigned char>(static_cast<int8_t>(c8(rng)));
          for (uint16_t& s : scales) s = FloatToHalf(us(rng));
          QkInt8Block a;
          a.q = prep.data(), a.q_bytes = qb, a.q_scale = qscale.data();
          a.heads = H, a.rows = rows, a.dim = D;
          a.codes = codes.data(), a.row_bytes = rb, a.key_bytes = H * rb;
          a.scales = reinterpret_cast<const unsigned char*>(scales.data());
          a.scale_row_bytes = 2 * rs, a.scale_key_bytes = H * 2 * rs;
          a.keys = keys, a.slots = slots, a.slots_per_head = sph;
          std::vector<float> s(static_cast<size_t>(keys * slots), -7.0f);
          a.s = s.data();
          (q4 ? ks[v]->qk_q4 : ks[v]->qk_q8)(a);
          int64_t bad = 0;
          for (int64_t kk = 0; kk < keys; ++kk)
            for (int64_t g = 0; g < H; ++g)
              for (int64_t i = 0; i < rows; ++i) {
                const int64_t r = g * rows + i;
                float s_q;
                const std::vector<int> c = Codes(q.data() + r * D, D, &s_q);
                const unsigned char* kr = codes.data() + (kk * H + g) * rb;
                const uint16_t* sr = scales.data() + (kk * H + g) * rs;
                double want = 0, mag = 0;
                for (int64_t d = 0; d < D; ++d) {
                  int kc;
                  double sk;
                  if (q4) {
                    const int64_t grp = d / 32, e = d % 32;
                    const unsigned byte = kr[16 * grp + e % 16];
                    kc = static_cast<int>(e < 16 ? byte & 15u : byte >> 4) - 8;
                    sk = HalfToFloat(sr[grp]);
                  } else {
                    kc = static_cast<int8_t>(kr[d]);
                    sk = HalfToFloat(sr[0]);
                  }
                  want += static_cast<double>(s_q) * sk * c[d] * kc;
                  mag += fabs(static_cast<double>(s_q) * sk * c[d] * kc);
                }
                const double got = s[kk * slots + g * sph + i];
                if (!(fabs(got - want) <= 1e-6 * mag + 1e-30)) ++bad;
              }
          CHECK(bad == 0);
          // The slots past the heads' are never written.
          for (int64_t kk = 0; kk < keys; ++kk)
            for (int64_t j = H * sph; j < slots; ++j)
              CHECK(s[kk * slots + j] == -7.0f);
        }
}

TEST_CASE("integer q.k: a NaN or Inf query row gives NaN scores") {
  const QkInt8Kernels* k = BestQkInt8Kernels();
  if (k == nullptr) {
    MESSAGE("no integer dot product on this CPU: skipped");
    return;
  }
  const int64_t D = 64;
  for (float bad : {NAN, INFINITY}) {
    std::vector<float> q(D, 0.5f);
    q[10] = bad;
    std::vector<unsigned char> prep(
        static_cast<size_t>(QkInt8PreparedBytes(D)));
    const float s_q = PrepareQkInt8Row(q.data(), D, false, prep.data());
    CHECK(isnan(s_q));
    float qscale[4] = {s_q, 0, 0, 0};
    std::vector<unsigned char> codes(D, 3);
    const uint16_t scale = FloatToHalf(0.01f);
    QkInt8Block a;
    a.q = prep.data(), a.q_bytes = QkInt8PreparedBytes(D), a.q_scale = qscale;
    a.heads = 1, a.rows = 1, a.dim = D;
    a.codes = codes.data(), a.row_bytes = D, a.key_bytes = D;
    a.scales = reinterpret_cast<const unsigned char*>(&scale);
    a.scale_row_bytes = 2, a.scale_key_bytes = 2;
    a.keys = 1, a.slots = 4, a.slots_per_head = 4;
    float s[4] = {0, 0, 0, 0};
    a.s = s;
    k->qk_q8(a);
    CHECK(isnan(s[0]));
  }
  // Tiny rows (127 / max|q| past f32) still get codes in [-127, 127].
  std::vector<float> q(D, ldexpf(1.0f, -127));  // max|q| = 2^-125
  q[1] = -ldexpf(1.0f, -125);
  q[2] = 0.0f;
  std::vector<unsigned char> prep(static_cast<size_t>(QkInt8PreparedBytes(D)));
  const float s_q = PrepareQkInt8Row(q.data(), D, false, prep.data());
  CHECK(s_q == ldexpf(1.0f, -125) / 127.0f);
  const int8_t* c = reinterpret_cast<const int8_t*>(prep.data() + kQkCodes);
  CHECK(c[0] == 32);  // round(127 / 4)
  CHECK(c[1] == -127);
  CHECK(c[2] == 0);
}

// The integer q.k (AttentionParams::qk_int8) against the reference on the
// emulated int8 q: exact up to f32 rounding, so the same tolerance. Decode
// shapes only (flash ignores the flag); the path the CPU has, or skipped.
TEST_CASE("blocked decode: integer q.k of q8 / q4 keys (VNNI / SDOT)") {
  if (BestQkInt8Kernels() == nullptr) {
    MESSAGE("no integer dot product on this CPU: skipped");
    return;
  }
  int64_t i = 0;
  for (ElemType kv : {ElemType::kQ8, ElemType::kQ4})
    for (int64_t D : {64, 128, 96})
      for (int64_t T : {1, 3}) {
        if (kv == ElemType::kQ4 && D == 96) continue;  // f32 path there
        BlockedCase c;
        c.kv = kv, c.D = D, c.T = T, c.bt = i % 2 ? 7 : 16;
        c.Hkv = 2, c.Hq = i % 3 == 0 ? 2 : 10;  // G = 1, 5: padding slots
        c.S = 1100;
        c.lengths = {1100, 300, T};
        c.q16 = i % 4 == 1;
        c.int8_qk = true;
        c.seed = 900 + static_cast<uint64_t>(i++);
        Check(c, T == 3);
      }
}

}  // namespace
}  // namespace test
}  // namespace gqa
