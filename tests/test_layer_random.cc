// The layer against the float64 reference on random configurations: every
// head grouping, odd and large head dims, T and S from 1 to 70 (primes
// included), every mask kind and broadcast, causal with T < S and T > S,
// sliding windows, gate, no bias, fully-masked rows under all three
// policies, dropout, f16 — each Highway target forced in turn.
#include <random>

#include "doctest/doctest.h"
#include "tests/layer_case.h"

namespace gqa {
namespace test {
namespace {

template <class T>
T Pick(std::mt19937_64& rng, std::initializer_list<T> list) {
  std::uniform_int_distribution<size_t> u(0, list.size() - 1);
  return *(list.begin() + u(rng));
}

LayerCase RandomCase(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  const std::pair<int64_t, int64_t> grouping =
      Pick<std::pair<int64_t, int64_t>>(rng, {{1, 1},
                                              {2, 1},
                                              {3, 1},
                                              {4, 1},
                                              {4, 2},
                                              {4, 4},
                                              {5, 5},
                                              {6, 3},
                                              {6, 2},
                                              {8, 2},
                                              {8, 1},
                                              {12, 4},
                                              {16, 4},
                                              {7, 7}});
  const int64_t lens[] = {1,  2,  3,  5,  7,  8,  11, 13, 16,
                          17, 31, 32, 37, 47, 61, 64, 67, 70};
  std::uniform_int_distribution<size_t> len_pick(
      0, sizeof(lens) / sizeof(lens[0]) - 1);
  const int64_t T = lens[len_pick(rng)], S = lens[len_pick(rng)];
  const int64_t D = Pick<int64_t>(
      rng, {1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 17, 31, 32, 33, 64, 65, 100, 128});
  const int64_t B = Pick<int64_t>(rng, {1, 1, 2, 3});
  std::uniform_int_distribution<int64_t> feat(1, 40);
  LayerCase c(seed * 7919 + 1);
  c.heads(grouping.first, grouping.second).head_dim(D).batch(B).lens(T, S);
  c.features(feat(rng), feat(rng), feat(rng)).key_given(coin(rng) < 0.5);
  c.bias(coin(rng) < 0.75).gate(coin(rng) < 0.25).causal(coin(rng) < 0.4);
  if (coin(rng) < 0.2) {
    std::uniform_int_distribution<int64_t> w(1, S + 2);
    c.window(w(rng));
  }
  c.scores(coin(rng) < 0.3);
  if (coin(rng) < 0.45) {
    const int rank = Pick<int>(rng, {2, 3, 4});
    auto maybe = [&](int64_t full) { return coin(rng) < 0.35 ? 1 : full; };
    std::vector<int64_t> dims;
    if (rank == 2) dims = {maybe(T), maybe(S)};
    if (rank == 3) dims = {maybe(B), maybe(T), maybe(S)};
    if (rank == 4) dims = {maybe(B), maybe(grouping.first), maybe(T), maybe(S)};
    c.attention_mask(dims, Pick<double>(rng, {0.15, 0.5, 0.85}));
  }
  if (coin(rng) < 0.25) c.query_mask(Pick<double>(rng, {0.3, 0.8}));
  if (coin(rng) < 0.25) c.value_mask(Pick<double>(rng, {0.3, 0.8}));
  if (coin(rng) < 0.2) c.key_mask(Pick<double>(rng, {0.3, 0.8}));
  if (coin(rng) < 0.15) {
    c.dropout(Pick<double>(rng, {0.1, 0.5, 1.0}), coin(rng) < 0.8);
    c.keep_mask(coin(rng) < 0.5);
  }
  c.policy(Pick<gqa_fully_masked_policy>(
      rng, {GQA_FULLY_MASKED_KERAS, GQA_FULLY_MASKED_ZERO,
            GQA_FULLY_MASKED_UNIFORM}));
  c.f16(coin(rng) < 0.25);
  c.threads(coin(rng) < 0.3 ? 2 : 1);
  return c;
}

TEST_CASE("layer matches the reference on random configurations") {
  // 240 natively; fewer (never fewer kinds: same generator) under qemu.
  const int cases = static_cast<int>(240 * TestScale());
  ForEachTarget([&](int64_t) {
    for (int i = 0; i < cases; ++i) {
      LayerCase c = RandomCase(static_cast<uint64_t>(i) + 1);
      c.Check();
    }
  });
}

TEST_CASE("causal alignment is top-left for T > S and T < S") {
  for (bool f16 : {false, true}) {
    LayerCase().lens(9, 4).causal().scores().f16(f16).Check();
    LayerCase().lens(4, 9).causal().scores().f16(f16).Check();
    LayerCase()
        .lens(5, 3)
        .causal()
        .heads(2, 2)
        .head_dim(2)
        .scores()
        .f16(f16)
        .Check();
  }
}

TEST_CASE("fully masked rows under each policy, with and without scores") {
  for (auto policy : {GQA_FULLY_MASKED_KERAS, GQA_FULLY_MASKED_ZERO,
                      GQA_FULLY_MASKED_UNIFORM}) {
    for (bool scores : {false, true}) {
      for (bool f16 : {false, true}) {
        // p = 0.15 over [B,T,S] leaves many rows with no allowed key.
        LayerCase(3)
            .lens(11, 5)
            .attention_mask({2, 11, 5}, 0.15)
            .policy(policy)
            .scores(scores)
            .f16(f16)
            .Check();
        LayerCase(4)
            .lens(6, 6)
            .query_mask(0.5)
            .causal()
            .policy(policy)
            .scores(scores)
            .f16(f16)
            .Check();
      }
    }
  }
}

TEST_CASE("a key of other width than value, and Fq != Fv") {
  LayerCase().features(16, 5, 9).key_given().Check();
  LayerCase().features(7, 3, 21).key_given().f16().Check();
}

TEST_CASE("output is bitwise identical for 1, 2, 3 and 8 threads") {
  for (bool f16 : {false, true}) {
    std::vector<float> first_out, first_scores;
    for (int threads : {1, 2, 3, 8}) {
      LayerCase c(77);
      c.batch(2)
          .heads(8, 2)
          .head_dim(24)
          .lens(33, 41)
          .features(40, 40, 40)
          .causal()
          .attention_mask({2, 1, 33, 41}, 0.8)
          .scores()
          .gate()
          .dropout(0.2)
          .f16(f16)
          .threads(threads);
      const LayerOutputs got = c.Run();
      REQUIRE(got.status == GQA_STATUS_OK);
      if (threads == 1) {
        first_out = got.output;
        first_scores = got.scores;
      } else {
        CHECK(SameBits(first_out, got.output));
        CHECK(SameBits(first_scores, got.scores));
      }
    }
  }
}

}  // namespace
}  // namespace test
}  // namespace gqa
