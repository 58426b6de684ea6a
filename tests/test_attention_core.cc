// The public attention core (gqa_attention) against a float64 reference:
// random cases around every tile boundary (1, lanes +- 1, Bk +- 1, primes to
// ~300), D from 1 to 256, every mask kind, f16/f32 q, k/v, out and scores,
// token- and head-major strides, every Highway target forced; outputs
// poisoned and checked all written; bitwise identity for 1, 2, 3, 8
// threads; long S accuracy; and the call errors.
#include <math.h>
#include <pthreadpool.h>
#include <string.h>

#include <random>
#include <vector>

#include "doctest/doctest.h"
#include "gqa/attention.h"
#include "gqa/gqa.hpp"
#include "src/half.h"
#include "tests/layer_case.h"

namespace gqa {
namespace test {
namespace {

struct CoreCase {
  int64_t B = 1, T = 5, S = 7, Hq = 4, Hkv = 2, D = 8;
  bool q16 = false, kv16 = false, out16 = false, scores16 = false;
  bool head_major = false;
  bool causal = false;
  int64_t offset = 0, window = 0;
  bool key_lengths = false, key_mask = false, mask = false, scores = false;
  int mask_rank_kind = 0;  // 0: [B,Hq,T,S]; 1: [T,S] broadcast; 2: [B,1,1,S]
  int32_t policy = GQA_FULLY_MASKED_KERAS;
  double mask_p = 0.7;
  uint64_t seed = 1;

  std::string Describe() const {
    char buf[300];
    snprintf(buf, sizeof(buf),
             "B%lld T%lld S%lld Hq%lld Hkv%lld D%lld q16%d kv16%d out16%d hm%d "
             "causal%d "
             "off%lld win%lld kl%d km%d mask%d/%d scores%d pol%d seed%llu",
             (long long)B, (long long)T, (long long)S, (long long)Hq,
             (long long)Hkv, (long long)D, q16, kv16, out16, head_major, causal,
             (long long)offset, (long long)window, key_lengths, key_mask, mask,
             mask_rank_kind, scores, policy, (unsigned long long)seed);
    return buf;
  }
};

struct CoreData {
  std::vector<float> q, k,
      v;  // logical [B,T,Hq,D], [B,S,Hkv,D] (f16-rounded if f16)
  std::vector<int64_t> lengths;
  std::vector<uint8_t> key_mask, mask;
  int64_t ms[4] = {0, 0, 0, 0};
};

CoreData MakeData(const CoreCase& c) {
  std::mt19937_64 rng(c.seed);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  CoreData d;
  auto fill = [&](std::vector<float>& v, size_t n, bool half) {
    v.resize(n);
    for (float& x : v) {
      x = u(rng);
      if (half) x = HalfToFloat(FloatToHalf(x));
    }
  };
  fill(d.q, c.B * c.T * c.Hq * c.D, c.q16);
  fill(d.k, c.B * c.S * c.Hkv * c.D, c.kv16);
  fill(d.v, c.B * c.S * c.Hkv * c.D, c.kv16);
  std::bernoulli_distribution coin(c.mask_p);
  if (c.key_lengths) {
    std::uniform_int_distribution<int64_t> len(0, c.S);
    for (int64_t b = 0; b < c.B; ++b) d.lengths.push_back(len(rng));
  }
  if (c.key_mask) {
    d.key_mask.resize(c.B * c.S);
    for (auto& x : d.key_mask) x = coin(rng);
  }
  if (c.mask) {
    if (c.mask_rank_kind == 0) {
      d.mask.resize(c.B * c.Hq * c.T * c.S);
      d.ms[0] = c.Hq * c.T * c.S, d.ms[1] = c.T * c.S, d.ms[2] = c.S,
      d.ms[3] = 1;
    } else if (c.mask_rank_kind == 1) {
      d.mask.resize(c.T * c.S);
      d.ms[2] = c.S, d.ms[3] = 1;
    } else {
      d.mask.resize(c.B * c.S);
      d.ms[0] = c.S, d.ms[3] = 1;
    }
    for (auto& x : d.mask) x = coin(rng);
  }
  return d;
}

// float64 reference: out [B,T,Hq,D], scores [B,Hq,T,S].
void Reference(const CoreCase& c, const CoreData& d, std::vector<double>* out,
               std::vector<double>* scores) {
  out->assign(c.B * c.T * c.Hq * c.D, 0.0);
  if (c.scores) scores->assign(c.B * c.Hq * c.T * c.S, 0.0);
  const double scale = 1.0 / sqrt(static_cast<double>(c.D));
  const bool uniform = c.policy == GQA_FULLY_MASKED_UNIFORM ||
                       (c.policy == GQA_FULLY_MASKED_KERAS && !c.scores);
  std::vector<double> x(c.S);
  std::vector<char> ok(c.S);
  for (int64_t b = 0; b < c.B; ++b) {
    for (int64_t u = 0; u < c.Hq; ++u) {
      const int64_t g = u / (c.Hq / c.Hkv);
      for (int64_t t = 0; t < c.T; ++t) {
        const int64_t pos = c.offset + t;
        double mx = -INFINITY;
        bool any = false;
        for (int64_t s = 0; s < c.S; ++s) {
          bool allowed = true;
          if (c.causal && s > pos) allowed = false;
          if (c.window > 0 && llabs(pos - s) >= c.window) allowed = false;
          if (c.key_lengths && s >= d.lengths[b]) allowed = false;
          if (c.key_mask && !d.key_mask[b * c.S + s]) allowed = false;
          if (c.mask &&
              !d.mask[b * d.ms[0] + u * d.ms[1] + t * d.ms[2] + s * d.ms[3]])
            allowed = false;
          ok[s] = allowed;
          double dot = 0;
          for (int64_t e = 0; e < c.D; ++e) {
            dot +=
                static_cast<double>(d.q[((b * c.T + t) * c.Hq + u) * c.D + e]) *
                d.k[((b * c.S + s) * c.Hkv + g) * c.D + e];
          }
          x[s] = dot * scale;
          if (allowed) {
            any = true;
            mx = std::max(mx, x[s]);
          }
        }
        double sum = 0;
        for (int64_t s = 0; s < c.S; ++s) sum += ok[s] ? exp(x[s] - mx) : 0.0;
        for (int64_t s = 0; s < c.S; ++s) {
          const double pr = any ? (ok[s] ? exp(x[s] - mx) / sum : 0.0)
                                : (uniform ? 1.0 / c.S : 0.0);
          if (c.scores) (*scores)[((b * c.Hq + u) * c.T + t) * c.S + s] = pr;
          for (int64_t e = 0; e < c.D; ++e) {
            (*out)[((b * c.T + t) * c.Hq + u) * c.D + e] +=
                pr * d.v[((b * c.S + s) * c.Hkv + g) * c.D + e];
          }
        }
      }
    }
  }
}

// Runs the public API; returns widened out and scores (logical layouts).
gqa_status RunCore(const CoreCase& c, const CoreData& d, int threads,
                   std::vector<float>* out, std::vector<float>* scores) {
  auto store = [](const std::vector<float>& src, bool half, int64_t B,
                  int64_t L, int64_t H, int64_t D, bool head_major,
                  std::vector<unsigned char>* raw, int64_t st[3]) {
    const size_t e = half ? 2 : 4;
    raw->assign(src.size() * e, 0);
    if (head_major) {
      st[0] = H * L * D, st[1] = D, st[2] = L * D;
    } else {
      st[0] = L * H * D, st[1] = H * D, st[2] = D;
    }
    for (int64_t b = 0; b < B; ++b)
      for (int64_t l = 0; l < L; ++l)
        for (int64_t h = 0; h < H; ++h)
          for (int64_t x = 0; x < D; ++x) {
            const float f = src[((b * L + l) * H + h) * D + x];
            const size_t at =
                static_cast<size_t>(b * st[0] + l * st[1] + h * st[2] + x);
            if (half) {
              const uint16_t hv = FloatToHalf(f);
              memcpy(raw->data() + at * 2, &hv, 2);
            } else {
              memcpy(raw->data() + at * 4, &f, 4);
            }
          }
  };
  std::vector<unsigned char> q, k, v;
  int64_t qs[3], ks[3], vs[3];
  store(d.q, c.q16, c.B, c.T, c.Hq, c.D, c.head_major, &q, qs);
  store(d.k, c.kv16, c.B, c.S, c.Hkv, c.D, c.head_major, &k, ks);
  store(d.v, c.kv16, c.B, c.S, c.Hkv, c.D, c.head_major, &v, vs);
  const size_t n_out = c.B * c.T * c.Hq * c.D, n_sc = c.B * c.Hq * c.T * c.S;
  std::vector<unsigned char> o(n_out * (c.out16 ? 2 : 4), 0xFF);  // poison: NaN
  std::vector<unsigned char> sc(c.scores ? n_sc * (c.scores16 ? 2 : 4) : 0,
                                0xFF);
  gqa_attention_params p;
  gqa_attention_params_init(&p);
  p.batch = c.B, p.q_len = c.T, p.kv_len = c.S, p.q_heads = c.Hq,
  p.kv_heads = c.Hkv;
  p.head_dim = c.D;
  p.q = q.data(), p.k = k.data(), p.v = v.data(), p.out = o.data();
  if (c.head_major) {
    p.q_stride_batch = qs[0], p.q_stride_token = qs[1], p.q_stride_head = qs[2];
    p.k_stride_batch = ks[0], p.k_stride_token = ks[1], p.k_stride_head = ks[2];
    p.v_stride_batch = vs[0], p.v_stride_token = vs[1], p.v_stride_head = vs[2];
  }
  p.q_dtype = c.q16 ? GQA_DTYPE_F16 : GQA_DTYPE_F32;
  p.kv_dtype = c.kv16 ? GQA_DTYPE_F16 : GQA_DTYPE_F32;
  p.out_dtype = c.out16 ? GQA_DTYPE_F16 : GQA_DTYPE_F32;
  p.causal = c.causal, p.position_offset = c.offset,
  p.sliding_window = c.window;
  p.key_lengths = c.key_lengths ? d.lengths.data() : nullptr;
  p.key_mask = c.key_mask ? d.key_mask.data() : nullptr;
  if (c.mask) {
    p.mask = d.mask.data();
    p.mask_stride_batch = d.ms[0], p.mask_stride_head = d.ms[1];
    p.mask_stride_query = d.ms[2], p.mask_stride_key = d.ms[3];
  }
  p.fully_masked_policy = c.policy;
  p.scores = c.scores ? sc.data() : nullptr;
  p.scores_dtype = c.scores16 ? GQA_DTYPE_F16 : GQA_DTYPE_F32;
  size_t bytes = 0;
  gqa_status s = gqa_attention_workspace_size(&p, threads, &bytes);
  if (s != GQA_STATUS_OK) return s;
  Workspace ws(bytes);
  pthreadpool_t pool = threads > 1 ? pthreadpool_create(threads) : nullptr;
  s = gqa_attention(&p, ws.data(), ws.size(), pool);
  if (pool) pthreadpool_destroy(pool);
  if (s != GQA_STATUS_OK) return s;
  auto widen = [](const std::vector<unsigned char>& raw, size_t n, bool half) {
    std::vector<float> w(n);
    RawToFloats(raw.data(), n, half, w.data());
    return w;
  };
  *out = widen(o, n_out, c.out16);  // out is token-major (default strides)
  if (c.scores) *scores = widen(sc, n_sc, c.scores16);
  return GQA_STATUS_OK;
}

// Runs c on the current target against a reference computed by the caller
// (under qemu the float64 reference costs as much as a kernel run: one per
// case, shared by every target).
void CheckAgainst(const CoreCase& c, const CoreData& d,
                  const std::vector<double>& want,
                  const std::vector<double>& want_scores, int threads = 1) {
  INFO(c.Describe() << " threads " << threads);
  std::vector<float> out, scores;
  REQUIRE(RunCore(c, d, threads, &out, &scores) == GQA_STATUS_OK);
  // f32: 1e-4 (as the golden cases). f16 out/scores: the final rounding to
  // binary16 adds up to 2^-11 relative (~5e-4); inputs are already f16.
  const double rtol = (c.out16 || c.scores16) ? 1.5e-3 : 1e-4;
  LayerCase::CheckClose(out, want, rtol, 1e-4, "out");
  if (c.scores)
    LayerCase::CheckClose(scores, want_scores, rtol, 1e-4, "scores");
}

void Check(const CoreCase& c, int threads = 1) {
  const CoreData d = MakeData(c);
  std::vector<double> want, want_scores;
  Reference(c, d, &want, &want_scores);
  CheckAgainst(c, d, want, want_scores, threads);
}

CoreCase RandomCoreCase(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> coin(0, 1);
  auto pick = [&](std::initializer_list<int64_t> l) {
    return *(l.begin() +
             std::uniform_int_distribution<size_t>(0, l.size() - 1)(rng));
  };
  // Around lanes (4, 8, 16), the key tile (64) and the query block, primes.
  const std::initializer_list<int64_t> lens = {
      1,  2,  3,  4,  5,  7,  8,   9,   15,  16,  17,  31,  32,
      33, 47, 63, 64, 65, 97, 127, 128, 129, 191, 193, 257, 293};
  CoreCase c;
  c.seed = seed;
  const int64_t groups[][2] = {{1, 1},   {2, 1},  {4, 1},  {4, 2},
                               {8, 2},   {6, 3},  {7, 1},  {14, 2},
                               {16, 16}, {12, 4}, {32, 8}, {5, 5}};
  const auto& gsel = groups[std::uniform_int_distribution<int>(0, 11)(rng)];
  c.Hq = gsel[0], c.Hkv = gsel[1];
  c.T = pick(lens);
  c.S = pick(lens);
  c.D = pick({1,  2,  3,  5,  7,  8,  15,  16,  17,  31,  32, 33,
              48, 63, 64, 65, 80, 96, 127, 128, 129, 200, 256});
  c.B = pick({1, 1, 2, 3});
  // Keep the float64 reference affordable and, under qemu (scale < 1), the
  // emulated kernels too: their time follows the multiply-adds and, at small
  // D, the logits (exp, scores). Natively the logit bound is implied (D >= 1).
  const double s2 = TestScale() * TestScale();
  const double max_macs = 12e6 * s2;
  const double max_logits = TestScale() < 1 ? 1.2e6 * s2 : max_macs;
  auto logits = [&] { return static_cast<double>(c.B * c.Hq * c.T * c.S); };
  while (logits() * c.D > max_macs || logits() > max_logits) {
    if (c.S > 2) {
      c.S = c.S / 2 + 1;
    } else if (c.T > 2) {
      c.T = c.T / 2 + 1;
    } else {
      break;
    }
  }
  c.q16 = coin(rng) < 0.3;
  c.kv16 = coin(rng) < 0.35;
  c.out16 = coin(rng) < 0.25;
  c.head_major = coin(rng) < 0.3;
  c.causal = coin(rng) < 0.5;
  if (c.causal && coin(rng) < 0.4) c.offset = pick({1, 3, 17, 64, 100});
  if (coin(rng) < 0.2) c.window = pick({1, 2, 5, 16, 63, 64, 65, 200});
  c.key_lengths = coin(rng) < 0.2;
  c.key_mask = coin(rng) < 0.2;
  c.mask = coin(rng) < 0.25;
  c.mask_rank_kind = static_cast<int>(pick({0, 1, 2}));
  c.mask_p = coin(rng) < 0.3 ? 0.1 : 0.75;
  c.scores = coin(rng) < 0.25;
  c.scores16 = c.scores && coin(rng) < 0.3;
  c.policy =
      static_cast<int32_t>(pick({GQA_FULLY_MASKED_KERAS, GQA_FULLY_MASKED_ZERO,
                                 GQA_FULLY_MASKED_UNIFORM}));
  return c;
}

TEST_CASE("core matches the reference on 520 random cases, every target") {
  const int cases = static_cast<int>(520 * TestScale());
  const std::vector<int64_t> targets = TargetsToTest();
  REQUIRE(!targets.empty());
  int runs = 0;
  for (int k = 0; k < cases; ++k) {
    const CoreCase c = RandomCoreCase(static_cast<uint64_t>(k) + 1);
    const CoreData d = MakeData(c);
    std::vector<double> want, want_scores;
    Reference(c, d, &want, &want_scores);
    for (int64_t target : targets) {  // every target gets every case
      hwy::SetSupportedTargetsForTest(target);
      CAPTURE(hwy::TargetName(target));
      CheckAgainst(c, d, want, want_scores);
      ++runs;
    }
  }
  hwy::SetSupportedTargetsForTest(0);
  CHECK(runs == cases * static_cast<int>(targets.size()));
}

TEST_CASE("core: bitwise identical output for 1, 2, 3 and 8 threads") {
  for (bool f16 : {false, true}) {
    CoreCase c;
    c.B = 2, c.T = 131, c.S = 257, c.Hq = 8, c.Hkv = 2, c.D = 64;
    c.causal = true, c.kv16 = f16, c.q16 = f16, c.scores = true,
    c.key_mask = true;
    const CoreData d = MakeData(c);
    std::vector<float> first, first_scores;
    for (int threads : {1, 2, 3, 8}) {
      std::vector<float> out, scores;
      REQUIRE(RunCore(c, d, threads, &out, &scores) == GQA_STATUS_OK);
      if (threads == 1) {
        first = out, first_scores = scores;
      } else {
        CHECK(SameBits(first, out));
        CHECK(SameBits(first_scores, scores));
      }
    }
  }
}

TEST_CASE("core: long S (16k+) stays accurate") {
  for (bool f16 : {false, true}) {
    CoreCase c;
    c.B = 1, c.T = 3,
    c.S = static_cast<int64_t>(16411 * (TestScale() < 1 ? 0.5 : 1.0));
    c.Hq = 4, c.Hkv = 1, c.D = 64, c.kv16 = f16;
    Check(c);
    c.causal = true, c.offset = c.S - c.T;  // decode-like: last rows see all
    Check(c);
  }
}

TEST_CASE("core: call errors") {
  std::vector<float> buf(64, 1.0f), out(64, 7.0f);
  gqa_attention_params p;
  gqa_attention_params_init(&p);
  p.batch = 1, p.q_len = 2, p.kv_len = 2, p.q_heads = 2, p.kv_heads = 1,
  p.head_dim = 4;
  p.q = p.k = p.v = buf.data();
  p.out = out.data();
  size_t bytes = 0;
  REQUIRE(gqa_attention_workspace_size(&p, 1, &bytes) == GQA_STATUS_OK);
  Workspace ws(bytes);
  auto expect = [&](gqa_attention_params bad, gqa_status want) {
    CHECK(gqa_attention(&bad, ws.data(), ws.size(), nullptr) == want);
    for (float x : out) CHECK(x == 7.0f);
  };
  gqa_attention_params b = p;
  b.kv_heads = 0;
  expect(b, GQA_STATUS_INVALID_SIZE);
  b = p, b.q_heads = 3, b.kv_heads = 2;
  expect(b, GQA_STATUS_HEADS_NOT_DIVISIBLE);
  b = p, b.k = nullptr;
  expect(b, GQA_STATUS_NULL_POINTER);
  b = p, b.kv_dtype = 9;
  expect(b, GQA_STATUS_INVALID_ENUM);
  b = p, b.fully_masked_policy = 5;
  expect(b, GQA_STATUS_INVALID_ENUM);
  b = p, b.scale = NAN;
  expect(b, GQA_STATUS_INVALID_ARGUMENT);
  b = p, b.sliding_window = -2;
  expect(b, GQA_STATUS_INVALID_SLIDING_WINDOW);
  b = p, b.position_offset = -1;
  expect(b, GQA_STATUS_INVALID_ARGUMENT);
  b = p, b.q_stride_token = -8, b.q_stride_head = 4, b.q_stride_batch = 8;
  expect(b, GQA_STATUS_INVALID_ARGUMENT);
  const int64_t lengths[1] = {3};
  b = p, b.key_lengths = lengths;
  expect(b, GQA_STATUS_INVALID_ARGUMENT);
  b = p, b.batch = int64_t{1} << 40, b.q_heads = int64_t{1} << 30,
  b.kv_heads = 1;
  expect(b, GQA_STATUS_SIZE_OVERFLOW);
  CHECK(gqa_attention(&p, nullptr, ws.size(), nullptr) ==
        GQA_STATUS_NULL_POINTER);
  CHECK(gqa_attention(&p, ws.data(), 8, nullptr) ==
        GQA_STATUS_WORKSPACE_TOO_SMALL);
  CHECK(gqa_attention(&p, static_cast<char*>(ws.data()) + 4, ws.size() - 64,
                      nullptr) == GQA_STATUS_WORKSPACE_MISALIGNED);
  CHECK(gqa_attention_workspace_size(&p, 0, &bytes) == GQA_STATUS_INVALID_SIZE);
  CHECK(gqa_attention_workspace_size(nullptr, 1, &bytes) ==
        GQA_STATUS_NULL_POINTER);
  for (float x : out) CHECK(x == 7.0f);
  CHECK(gqa_attention(&p, ws.data(), ws.size(), nullptr) == GQA_STATUS_OK);
}

TEST_CASE("core workspace does not grow with S") {
  gqa_attention_params p;
  gqa_attention_params_init(&p);
  p.batch = 1, p.q_len = 64, p.q_heads = 8, p.kv_heads = 2, p.head_dim = 64;
  std::vector<float> one(1);
  p.q = p.k = p.v = one.data();
  p.out = one.data();
  size_t small = 0, large = 0;
  p.kv_len = 128;
  REQUIRE(gqa_attention_workspace_size(&p, 2, &small) == GQA_STATUS_OK);
  p.kv_len = 1 << 20;
  REQUIRE(gqa_attention_workspace_size(&p, 2, &large) == GQA_STATUS_OK);
  CHECK(small == large);
}

}  // namespace
}  // namespace test
}  // namespace gqa
