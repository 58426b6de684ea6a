// The 30 shipped golden cases through the public C API: f32 at the case
// tolerance under every fully-masked-row policy they carry, f16 at the
// tolerance justified in bench/gqa_conformance.cc, every Highway target,
// and bitwise-identical results for 1, 2, 3 and 8 threads.
#include <string.h>

#include "bench/golden_case.h"
#include "doctest/doctest.h"
#include "tests/check.h"
#include "tests/layer_case.h"

namespace gqa {
namespace test {
namespace {

std::vector<GoldenCase> LoadAll() {
  std::vector<GoldenCase> cases;
  for (const std::string& dir : ListGoldenCaseDirs(GQA_GOLDEN_DIR)) {
    GoldenCase c;
    std::string error;
    INFO(error);
    REQUIRE(LoadGoldenCase(dir, &c, &error));
    cases.push_back(std::move(c));
  }
  return cases;
}

void CheckRun(const GoldenCase& c, const GoldenRun& run,
              const std::string& out_key, const std::string& scores_key,
              double tol_scale) {
  INFO(c.name << " " << out_key << ": " << run.message);
  REQUIRE(run.status == GQA_STATUS_OK);
  const GoldenArray* want = c.Find(out_key);
  REQUIRE(want != nullptr);
  const double rtol = tol_scale > 0 ? tol_scale : c.rtol;
  const double atol = tol_scale > 0 ? tol_scale : c.atol;
  CheckClose(run.output, want->data, rtol, atol, "output");
  if (c.want_scores) {
    const GoldenArray* ws = c.Find(scores_key);
    REQUIRE(ws != nullptr);
    CheckClose(run.scores, ws->data, rtol, atol, "scores");
  }
}

TEST_CASE("all 30 golden cases, f32 and f16, every policy and target") {
  const std::vector<GoldenCase> cases = LoadAll();
  REQUIRE(cases.size() == 30);
  ForEachTarget([&](int64_t) {
    for (const GoldenCase& c : cases) {
      for (gqa_dtype dtype : {GQA_DTYPE_F32, GQA_DTYPE_F16}) {
        const double tol = dtype == GQA_DTYPE_F16 ? 1e-2 : 0.0;
        CheckRun(c, RunGoldenCase(c, dtype, GQA_FULLY_MASKED_KERAS, 1),
                 "output", "scores", tol);
        for (const auto& alt : c.alternates) {
          const auto policy = alt.first == "zero" ? GQA_FULLY_MASKED_ZERO
                                                  : GQA_FULLY_MASKED_UNIFORM;
          auto sc = alt.second.find("scores");
          CheckRun(c, RunGoldenCase(c, dtype, policy, 1),
                   alt.second.at("output"),
                   sc == alt.second.end() ? "" : sc->second, tol);
        }
      }
    }
  });
}

TEST_CASE("golden cases give the same bits for 1, 2, 3 and 8 threads") {
  for (const GoldenCase& c : LoadAll()) {
    for (gqa_dtype dtype : {GQA_DTYPE_F32, GQA_DTYPE_F16}) {
      const GoldenRun one = RunGoldenCase(c, dtype, GQA_FULLY_MASKED_KERAS, 1);
      REQUIRE(one.status == GQA_STATUS_OK);
      for (int threads : {2, 3, 8}) {
        INFO(c.name << " threads " << threads);
        const GoldenRun many =
            RunGoldenCase(c, dtype, GQA_FULLY_MASKED_KERAS, threads);
        REQUIRE(many.status == GQA_STATUS_OK);
        CHECK(SameBits(one.output, many.output));
        CHECK(SameBits(one.scores, many.scores));
        CHECK(one.scores == many.scores);
      }
    }
  }
}

}  // namespace
}  // namespace test
}  // namespace gqa
