// Dropout on the probabilities: keep rate, 1/(1-rate) scaling, seeds,
// training=false, rate 1, injected keep masks, scores before dropout.
#include <string.h>

#include "doctest/doctest.h"
#include "src/attention_core.h"
#include "tests/layer_case.h"

namespace gqa {
namespace test {
namespace {

TEST_CASE("the seeded draw keeps 1 - rate of the probabilities") {
  for (float rate : {0.1f, 0.25f, 0.5f, 0.9f}) {
    const uint64_t n = 1 << 20;
    uint64_t kept = 0;
    for (uint64_t i = 0; i < n; ++i) kept += DropoutKeep(99, i, rate);
    const double frac = static_cast<double>(kept) / n;
    const double sigma = sqrt(rate * (1.0 - rate) / n);
    INFO("rate " << rate << " kept " << frac);
    CHECK(fabs(frac - (1.0 - rate)) < 5 * sigma);
  }
  CHECK(DropoutKeep(1, 5, 0.0f));
  CHECK_FALSE(DropoutKeep(1, 5, 1.0f));
}

TEST_CASE("seeded dropout matches the reference, f32 and f16, every target") {
  ForEachTarget([](int64_t) {
    for (bool f16 : {false, true}) {
      for (double rate : {0.1, 0.5, 0.9}) {
        LayerCase(11)
            .heads(4, 2)
            .lens(13, 17)
            .dropout(rate)
            .scores()
            .f16(f16)
            .Check();
        LayerCase(12)
            .heads(6, 3)
            .lens(8, 8)
            .causal()
            .dropout(rate)
            .keep_mask()
            .f16(f16)
            .Check();
      }
    }
  });
}

TEST_CASE("kept probabilities are scaled by 1/(1-rate)") {
  // No bias: the output is linear in the attention result, so keeping every
  // probability must scale the no-dropout output by 1/(1-rate).
  for (double rate : {0.375, 0.5, 0.8}) {
    for (bool f16 : {false, true}) {
      LayerCase plain(21), kept(21);
      plain.bias(false).heads(4, 1).lens(7, 9).f16(f16);
      kept.bias(false).heads(4, 1).lens(7, 9).f16(f16).dropout(rate).keep_all();
      const LayerOutputs p = plain.Run(), k = kept.Run();
      REQUIRE(p.status == GQA_STATUS_OK);
      REQUIRE(k.status == GQA_STATUS_OK);
      std::vector<double> want(p.output.begin(), p.output.end());
      for (double& x : want) x /= 1.0 - static_cast<float>(rate);
      CheckClose(k.output, want, f16 ? 2e-3 : 1e-5, 1e-6, "scaled");
    }
  }
}

TEST_CASE("same seed gives the same bits; another seed differs") {
  LayerCase a(41), b(41);
  a.lens(9, 9).dropout(0.5);
  b.lens(9, 9).dropout(0.5);
  const LayerOutputs ra = a.Run(), rb = b.Run();
  REQUIRE(ra.status == GQA_STATUS_OK);
  CHECK(SameBits(ra.output, rb.output));
  LayerCase other(41);
  other.lens(9, 9).dropout(0.5).dropout_seed(99);
  const LayerOutputs rc = other.Run();
  REQUIRE(rc.status == GQA_STATUS_OK);
  CHECK(!SameBits(ra.output, rc.output));
  other.Check();
  // The draw depends on the seed: the keep decisions of two seeds differ.
  int differ = 0;
  for (uint64_t i = 0; i < 1000; ++i)
    differ += DropoutKeep(1, i, 0.5f) != DropoutKeep(2, i, 0.5f);
  CHECK(differ > 400);
}

TEST_CASE("training=false applies no dropout") {
  LayerCase off(51), none(51);
  off.lens(8, 12).dropout(0.5, /*training=*/false);
  none.lens(8, 12).policy(GQA_FULLY_MASKED_ZERO);
  const LayerOutputs a = off.Run(), b = none.Run();
  REQUIRE(a.status == GQA_STATUS_OK);
  REQUIRE(b.status == GQA_STATUS_OK);
  CHECK(SameBits(a.output, b.output));
  off.Check();
}

TEST_CASE("rate 1 in training gives zero attention: output = output bias") {
  for (bool f16 : {false, true}) {
    LayerCase c(61);
    c.lens(5, 6).dropout(1.0).scores().f16(f16);
    c.Check();
    LayerCase nb(62);
    nb.bias(false).lens(5, 6).dropout(1.0).f16(f16);
    const LayerOutputs r = nb.Run();
    REQUIRE(r.status == GQA_STATUS_OK);
    for (float x : r.output) CHECK(x == 0.0f);
  }
}

}  // namespace
}  // namespace test
}  // namespace gqa
