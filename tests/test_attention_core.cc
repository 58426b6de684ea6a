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
#include "tests/core_case.h"
#include "tests/layer_case.h"

namespace gqa {
namespace test {
namespace {

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
    // Under qemu the float64 reference costs as much as a kernel run: it is
    // computed once per case (CoreCase caches it) and shared by every target.
    CoreCase c = RandomCoreCase(static_cast<uint64_t>(k) + 1);
    c.Reference();
    for (int64_t target : targets) {  // every target gets every case
      hwy::SetSupportedTargetsForTest(target);
      CAPTURE(hwy::TargetName(target));
      c.Check();
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
    std::vector<float> first, first_scores;
    for (int threads : {1, 2, 3, 8}) {
      std::vector<float> out, scores;
      REQUIRE(c.Run(threads, &out, &scores) == GQA_STATUS_OK);
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
    c.Check();
    c.with_causal(c.S - c.T);  // decode-like: last rows see all
    c.Check();
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
