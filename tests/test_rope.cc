// gqa_rope (include/gqa/rope.h) and its internal plan (src/rope.h) against
// the float64 oracle (src/reference/rope_ref.h): both styles, partial
// rotary, linear and llama3 scaling, the RMS norm, f32 and f16 in and out,
// in place, positions up to 2^24 - 1, ragged per-token positions; every
// refused call writes nothing; NaN propagates.
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <random>
#include <vector>

#include "doctest/doctest.h"
#include "gqa/gqa.hpp"
#include "gqa/rope.h"
#include "src/reference/f16_util.h"
#include "src/reference/rope_ref.h"
#include "src/rope.h"
#include "tests/check.h"

namespace gqa {
namespace test {
namespace {

constexpr int64_t kMaxPos = (int64_t{1} << 24) - 1;

// A RoPE call, its random inputs and the oracle's answer, built like the
// other suites' cases: RopeCase().dim(64).rotary(32).llama3().Check().
struct RopeCase {
  int64_t B = 2, T = 3, H = 3, D = 64, R = 0;
  bool interleaved = false, norm = false, x_half = false, y_half = false;
  bool in_place = false;
  int32_t scaling = GQA_ROPE_SCALING_NONE;
  double theta = 10000.0, factor = 1.0, lf = 1.0, hf = 4.0, L = 8192.0;
  float eps = 1e-6f;
  int64_t max_position = int64_t{1} << 17;  // random positions in [0, this]
  std::vector<int64_t> positions;           // [B, T], or empty: random
  uint64_t seed = 1;

  RopeCase& shape(int64_t b, int64_t t, int64_t h, int64_t d) {
    B = b, T = t, H = h, D = d;
    return *this;
  }
  RopeCase& rotary(int64_t r) {
    R = r;
    return *this;
  }
  RopeCase& interleave(bool on = true) {
    interleaved = on;
    return *this;
  }
  RopeCase& rms(bool on = true) {
    norm = on;
    return *this;
  }
  RopeCase& f16_in(bool on = true) {
    x_half = on;
    return *this;
  }
  RopeCase& f16_out(bool on = true) {
    y_half = on;
    return *this;
  }
  RopeCase& inplace(bool on = true) {
    in_place = on;
    return *this;
  }
  RopeCase& base(double t) {
    theta = t;
    return *this;
  }
  RopeCase& linear(double f) {
    scaling = GQA_ROPE_SCALING_LINEAR, factor = f;
    return *this;
  }
  RopeCase& llama3(double f = 8, double l = 1, double h = 4, double m = 8192) {
    scaling = GQA_ROPE_SCALING_LLAMA3, factor = f, lf = l, hf = h, L = m;
    return *this;
  }
  RopeCase& max_pos(int64_t p) {
    max_position = p;
    return *this;
  }
  RopeCase& at(std::vector<int64_t> p) {
    positions = p;
    return *this;
  }

  gqa_rope_params Params(const float* weight) const {
    gqa_rope_params p;
    gqa_rope_params_init(&p);
    p.rotary_dim = R;
    p.style = interleaved ? GQA_ROPE_INTERLEAVED : GQA_ROPE_HALF;
    p.scaling = scaling;
    p.theta = theta, p.factor = factor;
    p.low_freq_factor = lf, p.high_freq_factor = hf;
    p.original_max_position = L;
    p.norm_weight = weight, p.norm_eps = eps;
    return p;
  }

  // Runs gqa_rope on random inputs; *got: y widened to f32, *want: oracle.
  void Run(std::vector<float>* got, std::vector<double>* want,
           std::vector<float> x = {}) const {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_real_distribution<float> uniform(0.5f, 1.5f);
    const size_t n = static_cast<size_t>(B * T * H * D);
    if (x.empty()) {
      x.resize(n);
      for (float& v : x) v = normal(rng);
    }
    if (x_half) reference::RoundAllF16(&x);
    std::vector<float> weight(static_cast<size_t>(D));
    for (float& w : weight) w = uniform(rng);
    std::vector<int64_t> pos = positions;
    if (pos.empty()) {
      std::uniform_int_distribution<int64_t> draw(0, max_position);
      pos.resize(static_cast<size_t>(B * T));
      for (int64_t& p : pos) p = draw(rng);
    }
    REQUIRE(pos.size() == static_cast<size_t>(B * T));

    reference::RopeCall call;
    call.batch = B, call.tokens = T, call.heads = H, call.head_dim = D;
    call.x.assign(x.begin(), x.end());
    call.positions = pos;
    call.rotary_dim = R, call.interleaved = interleaved, call.theta = theta;
    call.scaling = scaling == GQA_ROPE_SCALING_LINEAR   ? "linear"
                   : scaling == GQA_ROPE_SCALING_LLAMA3 ? "llama3"
                                                        : "none";
    call.factor = factor, call.low_freq_factor = lf;
    call.high_freq_factor = hf, call.original_max_position = L;
    if (norm) call.norm_weight.assign(weight.begin(), weight.end());
    call.eps = eps;
    *want = reference::Rope(call);

    const gqa_rope_params p = Params(norm ? weight.data() : nullptr);
    std::vector<unsigned char> in = reference::Pack(x, x_half);
    // Poisoned: an element left unwritten fails the comparison.
    std::vector<float> poison(n, -7.75e30f);
    std::vector<unsigned char> out =
        in_place ? in : reference::Pack(poison, y_half);
    const gqa_status s =
        gqa_rope(&p, B, T, H, D, pos.data(), in_place ? out.data() : in.data(),
                 x_half ? GQA_DTYPE_F16 : GQA_DTYPE_F32, out.data(),
                 y_half ? GQA_DTYPE_F16 : GQA_DTYPE_F32);
    INFO(gqa_last_error_message());
    REQUIRE(s == GQA_STATUS_OK);
    got->resize(n);
    RawToFloats(out.data(), n, y_half, got->data());
  }

  void Check() const {
    CAPTURE(B);
    CAPTURE(T);
    CAPTURE(H);
    CAPTURE(D);
    CAPTURE(R);
    CAPTURE(interleaved);
    CAPTURE(scaling);
    CAPTURE(norm);
    CAPTURE(x_half);
    CAPTURE(y_half);
    CAPTURE(in_place);
    std::vector<float> got;
    std::vector<double> want;
    Run(&got, &want);
    // f16 out: one rounding, 2^-11 relative, on top of the f32 error.
    const double tol = y_half ? 1e-3 : 1e-4;
    CheckClose(got, want, tol, y_half ? 1e-4 : tol, "y");
  }
};

TEST_CASE("rope matches the float64 oracle: styles, R, scalings, norm") {
  uint64_t seed = 10;
  for (int64_t D : {2, 64, 80, 128}) {
    for (int64_t R : {int64_t{0}, D / 2 + D / 2 % 2, int64_t{2}}) {
      if (R > D || (R != 0 && R % 2 != 0)) continue;
      for (int scaling = 0; scaling < 3; ++scaling) {
        for (bool inter : {false, true}) {
          for (bool norm : {false, true}) {
            RopeCase c;
            c.shape(2, 3, 3, D).rotary(R).interleave(inter).rms(norm);
            if (scaling == 1) c.linear(4.0);
            if (scaling == 2) c.base(500000.0).llama3();
            c.seed = ++seed;
            c.Check();
          }
        }
      }
    }
  }
}

TEST_CASE("rope: head_dim 4096 and odd head counts, B, T, H > 1") {
  RopeCase().shape(1, 2, 2, 4096).rms().Check();
  RopeCase().shape(1, 2, 2, 4096).rotary(4094).interleave().Check();
  RopeCase().shape(3, 5, 7, 48).rotary(16).llama3(32, 2, 3, 1000).Check();
  RopeCase().shape(1, 1, 1, 8).Check();
  RopeCase big_eps = RopeCase().rms();  // eps counts, not only its presence
  big_eps.eps = 0.25f;
  big_eps.Check();
}

TEST_CASE("rope: f16 in and out, and in place") {
  for (bool xh : {false, true}) {
    for (bool yh : {false, true}) {
      RopeCase().f16_in(xh).f16_out(yh).rms().llama3().Check();
      RopeCase().f16_in(xh).f16_out(yh).interleave().rotary(32).Check();
      if (xh == yh) {
        RopeCase().f16_in(xh).f16_out(yh).inplace().rms().Check();
        RopeCase().f16_in(xh).f16_out(yh).inplace().interleave().Check();
      }
    }
  }
}

TEST_CASE("rope: positions up to 2^17 and near 2^24 - 1") {
  for (double theta : {10000.0, 500000.0, 1e6}) {
    CAPTURE(theta);
    RopeCase().base(theta).max_pos(int64_t{1} << 17).Check();
    RopeCase()
        .base(theta)
        .at({kMaxPos, kMaxPos - 1, kMaxPos - 2, int64_t{1} << 23, 0,
             int64_t{1} << 17})
        .Check();
    RopeCase().base(theta).max_pos(kMaxPos).llama3().rms().Check();
    RopeCase().base(theta).max_pos(kMaxPos).linear(2.5).interleave().Check();
  }
}

TEST_CASE("rope: ragged per-token positions are the token's own") {
  // Decreasing, repeated, far apart: each token rotates by its position.
  const std::vector<int64_t> pos = {7, 3, 3, 100000, 0, 65535, 1, 4096};
  RopeCase().shape(2, 4, 3, 64).at(pos).Check();
  RopeCase().shape(4, 2, 5, 32).at(pos).interleave().rms().Check();
  // Every token alone gives the same rows (nothing leaks across tokens).
  std::vector<float> all, one;
  std::vector<double> want;
  RopeCase whole = RopeCase().shape(2, 4, 3, 64).at(pos);
  whole.Run(&all, &want);
  std::mt19937_64 rng(whole.seed);
  std::vector<float> x(static_cast<size_t>(2 * 4 * 3 * 64));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& v : x) v = normal(rng);
  for (size_t t = 0; t < pos.size(); ++t) {
    RopeCase single = RopeCase().shape(1, 1, 3, 64).at({pos[t]});
    std::vector<float> xt(x.begin() + t * 192, x.begin() + (t + 1) * 192);
    single.Run(&one, &want, xt);
    CHECK(memcmp(one.data(), all.data() + t * 192, 192 * 4) == 0);
  }
}

TEST_CASE("rope plan: frequencies equal the oracle's; the row pass strides") {
  reference::RopeCall call;
  call.head_dim = 128, call.theta = 500000.0, call.scaling = "llama3";
  call.factor = 8, call.low_freq_factor = 1, call.high_freq_factor = 4;
  call.original_max_position = 8192;
  const std::vector<double> f = reference::RopeFrequencies(call);
  RopeCase c = RopeCase().shape(1, 1, 3, 128).base(500000.0).llama3();
  const gqa_rope_params p = c.Params(nullptr);
  static RopePlan plan;
  REQUIRE(PlanRope(p, 128, &plan) == GQA_STATUS_OK);
  REQUIRE(plan.rotary_dim == 128);
  int bands[3] = {0, 0, 0};  // unchanged, divided, blended
  for (size_t i = 0; i < f.size(); ++i) {
    CHECK(plan.inv_freq[i] == doctest::Approx(f[i]).epsilon(1e-15));
    const double unscaled = pow(500000.0, -2.0 * double(i) / 128);
    ++bands[f[i] == unscaled ? 0 : f[i] == unscaled / 8 ? 1 : 2];
  }
  CHECK(bands[0] > 0);
  CHECK(bands[1] > 0);
  CHECK(bands[2] > 0);

  // RopeRowsF32 on rows 200 floats apart: the gaps stay as they were, the
  // rows equal gqa_rope's.
  std::vector<float> rows(3 * 200), x(3 * 128), y(3 * 128);
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = float(i % 17) - 8.0f;
  for (int h = 0; h < 3; ++h) {
    memcpy(x.data() + h * 128, rows.data() + h * 200, 128 * 4);
  }
  const std::vector<float> before = rows;
  RopeRowsF32(plan, 99999, rows.data(), 3, 200);
  const int64_t pos = 99999;
  REQUIRE(gqa_rope(&p, 1, 1, 3, 128, &pos, x.data(), GQA_DTYPE_F32, y.data(),
                   GQA_DTYPE_F32) == GQA_STATUS_OK);
  for (int h = 0; h < 3; ++h) {
    CHECK(memcmp(rows.data() + h * 200, y.data() + h * 128, 128 * 4) == 0);
    CHECK(memcmp(rows.data() + h * 200 + 128, before.data() + h * 200 + 128,
                 72 * 4) == 0);
  }
  // A failed plan leaves the plan as it was.
  gqa_rope_params bad = p;
  bad.theta = 0.5;
  CHECK(PlanRope(bad, 128, &plan) == GQA_STATUS_INVALID_ARGUMENT);
  CHECK(plan.rotary_dim == 128);
  CHECK(plan.inv_freq[5] == doctest::Approx(f[5]).epsilon(1e-15));
}

TEST_CASE("rope through the C++ API (gqa.hpp) equals the C call") {
  std::vector<float> x(2 * 3 * 32), y(x.size());
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(i % 11) * 0.25f - 1.0f;
  const std::vector<int64_t> pos = {4, 40000};
  gqa_rope_params p = Rope::Params();
  p.style = GQA_ROPE_INTERLEAVED;
  REQUIRE(gqa_rope(&p, 1, 2, 3, 32, pos.data(), x.data(), GQA_DTYPE_F32,
                   y.data(), GQA_DTYPE_F32) == GQA_STATUS_OK);
  CHECK(Rope::RunInPlace(p, 1, 2, 3, 32, pos.data(), x.data()).ok());
  CHECK(memcmp(x.data(), y.data(), x.size() * 4) == 0);
  p.rotary_dim = 3;
  const Status s = Rope::Run(p, 1, 2, 3, 32, pos.data(), x.data(),
                             GQA_DTYPE_F32, y.data(), GQA_DTYPE_F32);
  CHECK(s.code() == GQA_STATUS_INVALID_ARGUMENT);
  CHECK(s.message().find("rotary_dim") != std::string::npos);
}

TEST_CASE("rope: a NaN propagates, never becomes a number") {
  const int64_t D = 16;
  for (bool norm : {false, true}) {
    for (bool yh : {false, true}) {
      for (int64_t pos : {int64_t{0}, int64_t{12345}}) {
        CAPTURE(norm);
        CAPTURE(yh);
        CAPTURE(pos);
        std::vector<float> x(2 * D, 0.5f);
        x[3] = NAN;       // rotary pair (3, 3 + R/2) of row 0 (R = 8)
        x[D + 12] = NAN;  // pass-through element of row 1
        RopeCase c = RopeCase().shape(1, 1, 2, D).rotary(8).at({pos});
        c.rms(norm).f16_out(yh);
        std::vector<float> got;
        std::vector<double> want;
        c.Run(&got, &want, x);
        for (int64_t i = 0; i < 2 * D; ++i) {
          CAPTURE(i);
          // The norm spreads a row's NaN over the row (both rows have one).
          const bool nan_here = norm || i == 3 || i == 3 + 4 || i == D + 12;
          CHECK(bool(isnan(got[i])) == nan_here);
          CHECK(bool(isnan(want[i])) == nan_here);
        }
      }
    }
  }
}

TEST_CASE("rope: rows of tiny values normalise like the reference") {
  std::vector<float> x(2 * 32);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 1e-40f * float(i % 5 + 1);
  RopeCase c = RopeCase().shape(1, 1, 2, 32).rms().at({777});
  c.eps = 0.0f;
  std::vector<float> got;
  std::vector<double> want;
  c.Run(&got, &want, x);
  CheckClose(got, want, 1e-4, 1e-4, "y");
}

}  // namespace
}  // namespace test
}  // namespace gqa
