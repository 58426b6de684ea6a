// Running `rope` golden cases of the LLM format through the public RoPE
// helper (gqa_rope, include/gqa/rope.h); see golden_llm.h. Each case runs
// f32 -> f32 twice, into a poisoned y and in place on a copy of x: both
// must meet the case's tolerance and agree bit for bit.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <set>

#include "bench/golden_llm.h"
#include "gqa/gqa.h"
#include "gqa/rope.h"
#include "src/reference/closeness.h"

namespace gqa {
namespace {

const LlmArray* File(const LlmCase& c, const char* role) {
  auto it = c.files.find(role);
  return it == c.files.end() ? nullptr : &it->second;
}

// The case's options as gqa_rope_params; "" or why they are not valid.
std::string ParamsOf(const LlmCase& c, int64_t D, gqa_rope_params* p) {
  gqa_rope_params_init(p);
  static const std::set<std::string> kNumeric = {"R",
                                                 "theta",
                                                 "factor",
                                                 "low_freq_factor",
                                                 "eps",
                                                 "high_freq_factor",
                                                 "original_max_position"};
  static const std::set<std::string> kStrings = {"style", "scaling"};
  for (const auto& o : c.numeric_options) {
    if (!kNumeric.count(o.first)) return "option '" + o.first + "' is unknown";
  }
  for (const auto& o : c.string_options) {
    if (!kStrings.count(o.first)) return "option '" + o.first + "' is unknown";
  }
  auto num = [&](const char* name, double fallback) {
    auto it = c.numeric_options.find(name);
    return it == c.numeric_options.end() ? fallback : it->second;
  };
  auto str = [&](const char* name, const char* fallback) {
    auto it = c.string_options.find(name);
    return it == c.string_options.end() ? std::string(fallback) : it->second;
  };
  const double R = num("R", static_cast<double>(D));
  if (R != floor(R) || !(R >= 0.0 && R <= 1e9)) return "options.R: not an int";
  p->rotary_dim = static_cast<int64_t>(R);
  const std::string style = str("style", "half");
  if (style != "half" && style != "interleaved") {
    return "options.style '" + style + "' is unknown";
  }
  p->style = style == "half" ? GQA_ROPE_HALF : GQA_ROPE_INTERLEAVED;
  const std::string scaling = str("scaling", "none");
  if (scaling == "none") {
    p->scaling = GQA_ROPE_SCALING_NONE;
  } else if (scaling == "linear") {
    p->scaling = GQA_ROPE_SCALING_LINEAR;
  } else if (scaling == "llama3") {
    p->scaling = GQA_ROPE_SCALING_LLAMA3;
  } else {
    return "options.scaling '" + scaling + "' is unknown";
  }
  p->theta = num("theta", 10000.0);
  p->factor = num("factor", 1.0);
  p->low_freq_factor = num("low_freq_factor", 1.0);
  p->high_freq_factor = num("high_freq_factor", 4.0);
  p->original_max_position = num("original_max_position", 8192.0);
  p->norm_eps = static_cast<float>(num("eps", 1e-6));
  return "";
}

}  // namespace

LlmResult RunRopeCase(const LlmCase& c) {
  LlmResult r;
  if (c.kind != "rope") {
    r.message = "kind " + c.kind + " is not rope";
    return r;
  }
  const int64_t B = c.shapes.at("B"), T = c.shapes.at("T"),
                H = c.shapes.at("H"), D = c.shapes.at("D");
  gqa_rope_params p;
  const std::string why = ParamsOf(c, D, &p);
  if (!why.empty()) {
    r.message = why;
    return r;
  }
  const LlmArray* norm = File(c, "norm_weight");
  if (norm) p.norm_weight = norm->f32.data();
  const std::vector<float>& x = File(c, "x")->f32;
  const std::vector<int64_t>& positions = File(c, "positions")->i64;
  std::vector<float> y(x.size(), -7.75e30f), in_place = x;
  gqa_status st = gqa_rope(&p, B, T, H, D, positions.data(), x.data(),
                           GQA_DTYPE_F32, y.data(), GQA_DTYPE_F32);
  if (st == GQA_STATUS_OK) {
    st = gqa_rope(&p, B, T, H, D, positions.data(), in_place.data(),
                  GQA_DTYPE_F32, in_place.data(), GQA_DTYPE_F32);
  }
  if (st != GQA_STATUS_OK) {
    r.message =
        std::string(gqa_status_name(st)) + ": " + gqa_last_error_message();
    return r;
  }
  // NaN where both are NaN counts as equal.
  std::vector<float> got = y, want = File(c, "y")->f32;
  for (size_t i = 0; i < got.size() && i < want.size(); ++i) {
    if (isnan(got[i]) && isnan(want[i])) got[i] = want[i] = 0.0f;
  }
  const reference::Closeness cmp =
      reference::Compare(got, want, c.tolerance.rtol, c.tolerance.atol);
  r.max_abs_err = cmp.max_abs_err;
  if (!cmp.pass()) {
    r.message = cmp.Describe("y");
    return r;
  }
  if (memcmp(y.data(), in_place.data(), y.size() * sizeof(float)) != 0) {
    r.message = "y in place differs from y out of place";
    return r;
  }
  r.outcome = LlmOutcome::kPassed;
  char buf[120];
  snprintf(buf, sizeof(buf), "f32, in place too, max_abs_err %.3e",
           r.max_abs_err);
  r.message = buf;
  return r;
}

}  // namespace gqa
