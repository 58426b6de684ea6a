// The LLM logit options of the attention core (softcap, ALiBi slopes, the
// additive bias, learned sinks; shared/spec/llm-attention-semantics.md 2-3)
// against the float64 oracle: alone and together, in decode shapes (the
// decode kernel, key axis split in chunks) and prefill shapes (flash), f32
// and f16, scores, every Highway target; bitwise identical for 1 and 2
// threads; sinks on fully masked rows, -inf and NaN in the bias, NaN q
// under softcap; the standard ALiBi slopes; and every bad value refused with
// nothing written.
#include <math.h>
#include <string.h>

#include <random>
#include <vector>

#include "doctest/doctest.h"
#include "gqa/attention.h"
#include "tests/core_case.h"
#include "tests/layer_case.h"

namespace gqa {
namespace test {
namespace {

// Decode-kernel shapes (G * T <= 32, S over several 512-key chunks; D 40
// packs the rows) and flash shapes (many rows, several key tiles).
CoreCase Shape(int which) {
  CoreCase c;
  const bool qemu = TestScale() < 1;
  switch (which) {
    case 0:  // decode T1, 3 chunks natively
      c.B = 2, c.T = 1, c.S = qemu ? 300 : 1100, c.Hq = 8, c.Hkv = 2, c.D = 64;
      break;
    case 1:  // decode T3, packed rows
      c.B = 1, c.T = 3, c.S = qemu ? 90 : 600, c.Hq = 4, c.Hkv = 1, c.D = 40;
      break;
    default:  // flash
      c.B = 2, c.T = qemu ? 19 : 37, c.S = qemu ? 70 : 150, c.Hq = 6, c.Hkv = 3,
      c.D = 32;
      break;
  }
  return c;
}

// Checks against the oracle on every target, and that 2 threads give the
// bits of 1.
void CheckAllTargets(CoreCase c) {
  ForEachTarget([&](int64_t) {
    c.Check(1);
    std::vector<float> one, two, s1, s2;
    REQUIRE(c.Run(1, &one, &s1) == GQA_STATUS_OK);
    REQUIRE(c.Run(2, &two, &s2) == GQA_STATUS_OK);
    CHECK(SameBits(one, two));
    if (c.scores) CHECK(SameBits(s1, s2));
  });
}

TEST_CASE("each option alone and all together match the oracle") {
  for (int shape = 0; shape < 3; ++shape) {
    for (int option = 0; option < 6; ++option) {
      for (bool half : {false, true}) {
        CoreCase c = Shape(shape);
        c.f16(half);
        c.seed = 100 + shape * 10 + option;
        c.with_causal(c.S - c.T);  // queries at the end of the keys
        switch (option) {
          case 0:
            c.softcap = 5.0;
            break;
          case 1:
            c.alibi = true;
            break;
          case 2:
            c.sinks = true;
            break;
          case 3:
            c.bias_kind = 1 + (shape % 3);
            break;
          case 4:  // all of them, a window, key lengths
            c.softcap = 20.0, c.alibi = c.sinks = true;
            c.bias_kind = 2;
            c.window = 45;
            c.key_lengths = true;
            break;
          default:  // softcap and sinks with scores (flash only)
            c.softcap = 3.0, c.sinks = true;
            c.with_scores();
            break;
        }
        CAPTURE(option);
        CheckAllTargets(c);
      }
    }
  }
}

TEST_CASE("a value head size other than D (Dv < D, Dv > D, odd Dv)") {
  for (int shape = 0; shape < 3; ++shape) {
    for (int64_t dv : {24, 128, 7}) {
      for (int variant = 0; variant < 3; ++variant) {
        CoreCase c = Shape(shape);
        c.value_dim = dv;
        c.seed = 300 + shape * 10 + variant;
        if (variant == 0) c.f16();
        if (variant == 1) {  // head-major views, f16 out, options
          c.head_major = true;
          c.out16 = true;
          c.sinks = true;
          c.softcap = 8.0;
        }
        if (variant == 2) {  // empty rows averaged under the uniform policy
          c.key_lengths = true;
          c.policy = GQA_FULLY_MASKED_UNIFORM;
          c.B = 3;
        }
        CAPTURE(variant);
        CheckAllTargets(c);
      }
    }
  }
  CoreCase c = Shape(2);
  c.value_dim = 24;
  c.with_scores();
  CheckAllTargets(c);
}

TEST_CASE("sinks: a row with no allowed key gives 0, whatever the policy") {
  for (int shape = 0; shape < 3; ++shape) {
    for (int32_t policy : {GQA_FULLY_MASKED_UNIFORM, GQA_FULLY_MASKED_ZERO}) {
      CoreCase c = Shape(shape);
      c.sinks = true;
      c.key_lengths = true;  // some batches may see no key
      c.policy = policy;
      c.seed = 7 + shape;
      c.B = 4;
      const CoreData& d = c.Data();
      // Make batch 0 empty so the case always has a fully masked row.
      const_cast<CoreData&>(d).lengths[0] = 0;
      CheckAllTargets(c);
      std::vector<float> out, sc;
      REQUIRE(c.Run(1, &out, &sc) == GQA_STATUS_OK);
      for (int64_t i = 0; i < c.T * c.Hq * c.D; ++i) REQUIRE(out[i] == 0.0f);
    }
  }
}

TEST_CASE("bias: -inf masks the key; rows masked by it keep the policy") {
  for (int shape = 0; shape < 3; ++shape) {
    for (int kind = 1; kind <= 3; ++kind) {
      CoreCase c = Shape(shape);
      c.bias_kind = kind;
      c.bias_neg_inf = true;
      c.policy = GQA_FULLY_MASKED_UNIFORM;
      c.seed = 40 + shape * 3 + kind;
      if (kind == 3) c.S = 9;  // [B,1,T,1]: whole rows -inf, often
      CheckAllTargets(c);
    }
  }
}

// Row (b, t, u) of out [B,T,Hq,D] is all NaN (want) or all finite.
void CheckNaNRows(const CoreCase& c, const std::vector<float>& out,
                  int64_t nan_b, int64_t nan_t, int64_t nan_u) {
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t t = 0; t < c.T; ++t)
      for (int64_t u = 0; u < c.Hq; ++u)
        for (int64_t d = 0; d < c.D; ++d) {
          const float x = out[((b * c.T + t) * c.Hq + u) * c.D + d];
          const bool want_nan = b == nan_b && t == nan_t && u == nan_u;
          INFO(b << " " << t << " " << u << " " << d);
          REQUIRE(isnan(x) == want_nan);
        }
}

TEST_CASE("NaN propagates through the bias and the softcap") {
  for (int shape = 0; shape < 3; ++shape) {
    ForEachTarget([&](int64_t) {
      CoreCase c = Shape(shape);
      c.bias_kind = 1;  // dense: one NaN reaches one row
      c.softcap = 4.0;
      c.sinks = true;
      CoreData& d = const_cast<CoreData&>(c.Data());
      const int64_t b = c.B - 1, t = c.T - 1, u = 1, s = c.S / 2;
      d.bias[b * d.bs[0] + u * d.bs[1] + t * d.bs[2] + s * d.bs[3]] = NAN;
      std::vector<float> out, sc;
      REQUIRE(c.Run(1, &out, &sc) == GQA_STATUS_OK);
      CheckNaNRows(c, out, b, t, u);
      // NaN in q: the softcap must not turn its NaN logits into +-c.
      CoreCase q = Shape(shape);
      q.softcap = 4.0;
      CoreData& dq = const_cast<CoreData&>(q.Data());
      dq.q[((0 * q.T + 0) * q.Hq + 2) * q.D + 3] = NAN;
      REQUIRE(q.Run(1, &out, &sc) == GQA_STATUS_OK);
      CheckNaNRows(q, out, 0, 0, 2);
    });
  }
}

TEST_CASE("gqa_alibi_slopes: the standard slopes; bad arguments refused") {
  float m[12];
  REQUIRE(gqa_alibi_slopes(8, 8.0f, m) == GQA_STATUS_OK);
  for (int h = 0; h < 8; ++h) CHECK(m[h] == ldexpf(1.0f, -(h + 1)));
  // 12 heads: n = 8; heads 8..11 get 2^(-8 (2 (h - 8) + 1) / 16).
  REQUIRE(gqa_alibi_slopes(12, 8.0f, m) == GQA_STATUS_OK);
  for (int h = 0; h < 8; ++h) CHECK(m[h] == ldexpf(1.0f, -(h + 1)));
  for (int h = 8; h < 12; ++h) {
    CHECK(m[h] ==
          doctest::Approx(exp2(-0.5 * (2 * (h - 8) + 1))).epsilon(1e-7));
  }
  REQUIRE(gqa_alibi_slopes(1, 4.0f, m) == GQA_STATUS_OK);
  CHECK(m[0] == 1.0f / 16.0f);
  float keep = 12345.0f;
  for (float bad : {0.0f, -1.0f, NAN, INFINITY}) {
    CHECK(gqa_alibi_slopes(1, bad, &keep) == GQA_STATUS_INVALID_ARGUMENT);
  }
  CHECK(gqa_alibi_slopes(0, 8.0f, &keep) == GQA_STATUS_INVALID_SIZE);
  CHECK(gqa_alibi_slopes(-3, 8.0f, &keep) == GQA_STATUS_INVALID_SIZE);
  CHECK(gqa_alibi_slopes(4, 8.0f, nullptr) == GQA_STATUS_NULL_POINTER);
  CHECK(keep == 12345.0f);
}

// A valid decode-shaped call with its buffers; out poisoned.
struct Call {
  static constexpr int64_t B = 1, T = 1, S = 40, Hq = 4, Hkv = 2, D = 16;
  std::vector<float> q, k, v, out, slopes, sinks, bias;
  gqa_attention_params p;
  Call()
      : q(B * T * Hq * D, 0.5f),
        k(B * S * Hkv * D, 0.25f),
        v(B * S * Hkv * D, 1.0f),
        out(B * T * Hq * D, 777.0f),
        slopes(Hq, 0.5f),
        sinks(Hq, 1.0f),
        bias(B * Hq * T * S, 0.0f) {
    gqa_attention_params_init(&p);
    p.batch = B, p.q_len = T, p.kv_len = S, p.q_heads = Hq, p.kv_heads = Hkv;
    p.head_dim = D;
    p.q = q.data(), p.k = k.data(), p.v = v.data(), p.out = out.data();
    p.softcap = 10.0f;
    p.alibi_slopes = slopes.data();
    p.sinks = sinks.data();
    p.bias = bias.data();
    p.bias_stride_head = T * S, p.bias_stride_query = S, p.bias_stride_key = 1;
  }
  gqa_status Run() {
    size_t bytes = 0;
    gqa_status s = gqa_attention_workspace_size(&p, 1, &bytes);
    if (s != GQA_STATUS_OK) return s;
    Workspace ws(bytes);
    return gqa_attention(&p, ws.data(), ws.size(), nullptr);
  }
  bool Untouched() const {
    for (float x : out)
      if (x != 777.0f) return false;
    return true;
  }
};

TEST_CASE("bad option values are refused and write nothing") {
  {
    Call ok;
    REQUIRE(ok.Run() == GQA_STATUS_OK);
    CHECK(!ok.Untouched());
  }
  for (float bad : {-1.0f, -0.0f - 1e-30f, NAN, INFINITY, -INFINITY}) {
    Call c;
    c.p.softcap = bad;
    CAPTURE(bad);
    CHECK(c.Run() == GQA_STATUS_INVALID_ARGUMENT);
    CHECK(c.Untouched());
  }
  for (float bad : {NAN, INFINITY, -INFINITY}) {
    for (int which = 0; which < 2; ++which) {
      Call c;
      (which == 0 ? c.slopes : c.sinks)[3] = bad;
      CAPTURE(bad);
      CAPTURE(which);
      CHECK(c.Run() == GQA_STATUS_INVALID_ARGUMENT);
      CHECK(c.Untouched());
      CHECK(strstr(gqa_last_error_message(),
                   which == 0 ? "alibi_slopes[3]" : "sinks[3]") != nullptr);
    }
  }
  {
    Call c;
    c.p.bias_stride_key = -1;
    CHECK(c.Run() == GQA_STATUS_INVALID_ARGUMENT);
    CHECK(c.Untouched());
  }
  {
    Call c;
    c.p.bias_stride_head = int64_t{1} << 47;  // (Hq - 1) * 2^47 > 2^48
    CHECK(c.Run() == GQA_STATUS_SIZE_OVERFLOW);
    CHECK(c.Untouched());
  }
  for (int which = 0; which < 3; ++which) {  // out aliasing an option input
    Call c;
    const float* in = which == 0   ? c.bias.data()
                      : which == 1 ? c.slopes.data()
                                   : c.sinks.data();
    c.p.out = const_cast<float*>(in);
    c.p.out_stride_batch = c.p.out_stride_token = 0;
    c.p.out_stride_head = 0;
    CAPTURE(which);
    const std::vector<float> before(in, in + 4);
    CHECK(c.Run() == GQA_STATUS_INVALID_ARGUMENT);
    CHECK(memcmp(before.data(), in, 16) == 0);
  }
  {
    Call c;
    c.p.value_dim = -1;
    CHECK(c.Run() == GQA_STATUS_INVALID_SIZE);
    CHECK(c.Untouched());
  }
  {  // v's view with Dv reaches past 2^48 elements
    Call c;
    c.p.value_dim = int64_t{1} << 47;
    CHECK(c.Run() == GQA_STATUS_SIZE_OVERFLOW);
    CHECK(c.Untouched());
  }
  {  // the workspace query checks the softcap too
    Call c;
    c.p.softcap = -2.0f;
    size_t bytes = 0;
    CHECK(gqa_attention_workspace_size(&c.p, 1, &bytes) ==
          GQA_STATUS_INVALID_ARGUMENT);
  }
}

}  // namespace
}  // namespace test
}  // namespace gqa
