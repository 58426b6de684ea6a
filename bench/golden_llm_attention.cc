// Running `attention` golden cases of the LLM format through the public
// attention core (gqa_attention, include/gqa/attention.h); see golden_llm.h.
// Per-batch query offsets are not a core parameter: a case with `offsets`
// runs one call per batch (batch 1, the views and masks sliced to it).
#include <math.h>
#include <pthreadpool.h>
#include <stdio.h>
#include <stdlib.h>

#include <memory>
#include <set>

#include "bench/golden_llm.h"
#include "gqa/attention.h"
#include "gqa/gqa.h"
#include "src/half.h"
#include "src/reference/closeness.h"

namespace gqa {
namespace {

struct PoolDeleter {
  void operator()(pthreadpool_t p) const {
    if (p) pthreadpool_destroy(p);
  }
};
struct FreeDeleter {
  void operator()(void* p) const { free(p); }
};

double Option(const LlmCase& c, const char* name, double fallback) {
  auto it = c.numeric_options.find(name);
  return it == c.numeric_options.end() ? fallback : it->second;
}
std::string StringOption(const LlmCase& c, const char* name,
                         const char* fallback) {
  auto it = c.string_options.find(name);
  return it == c.string_options.end() ? fallback : it->second;
}
const LlmArray* File(const LlmCase& c, const char* role) {
  auto it = c.files.find(role);
  return it == c.files.end() ? nullptr : &it->second;
}

// Strides of a [B|1, Hq|1, T|1, S] array broadcast over [B, Hq, T, S]
// (stride 0 on an axis of size 1); false if a dim is neither 1 nor full.
bool BroadcastStrides(const LlmArray& a, const int64_t full[4],
                      int64_t strides[4]) {
  if (a.shape.size() != 4) return false;
  int64_t stride = 1;
  for (int i = 3; i >= 0; --i) {
    if (a.shape[i] != 1 && a.shape[i] != full[i]) return false;
    strides[i] = a.shape[i] == 1 ? 0 : stride;
    stride *= a.shape[i];
  }
  return true;
}

std::vector<uint16_t> ToHalves(const std::vector<float>& x) {
  std::vector<uint16_t> h(x.size());
  for (size_t i = 0; i < x.size(); ++i) h[i] = FloatToHalf(x[i]);
  return h;
}

}  // namespace

std::string LlmAttentionUnsupportedReason(const LlmCase& c) {
  if (c.kind != "attention") return "kind " + c.kind + " is not attention";
  static const std::set<std::string> kKnown = {
      "q",    "k",           "v",        "out",  "scores", "offsets",
      "bias", "key_lengths", "key_mask", "mask", "alibi",  "sinks"};
  for (const auto& f : c.files) {
    if (!kKnown.count(f.first)) return "input '" + f.first + "' is unknown";
  }
  return "";
}

LlmResult RunAttentionCase(const LlmCase& c, int threads,
                           std::vector<float>* out_copy) {
  LlmResult r;
  const std::string why = LlmAttentionUnsupportedReason(c);
  if (!why.empty()) {
    r.outcome = LlmOutcome::kSkipped;
    r.message = "skipped: " + why;
    return r;
  }
  const int64_t B = c.shapes.at("B"), T = c.shapes.at("T"),
                S = c.shapes.at("S"), Hq = c.shapes.at("Hq"),
                Hkv = c.shapes.at("Hkv"), D = c.shapes.at("D");
  const int64_t Dv = c.shapes.count("Dv") ? c.shapes.at("Dv") : D;
  const int64_t full[4] = {B, Hq, T, S};
  const bool f16_q = StringOption(c, "q_dtype", "f32") == "f16";
  const bool f16_kv = StringOption(c, "kv_dtype", "f32") == "f16";
  const std::vector<float>& q = File(c, "q")->f32;
  const std::vector<float>& k = File(c, "k")->f32;
  const std::vector<float>& v = File(c, "v")->f32;
  const std::vector<uint16_t> qh = ToHalves(q), kh = ToHalves(k),
                              vh = ToHalves(v);
  const LlmArray* offsets = File(c, "offsets");
  const LlmArray* bias = File(c, "bias");
  const LlmArray* mask = File(c, "mask");
  const LlmArray* key_lengths = File(c, "key_lengths");
  const LlmArray* key_mask = File(c, "key_mask");
  const LlmArray* alibi = File(c, "alibi");
  const LlmArray* sinks = File(c, "sinks");
  int64_t bias_st[4] = {0, 0, 0, 0}, mask_st[4] = {0, 0, 0, 0};
  if ((bias && !BroadcastStrides(*bias, full, bias_st)) ||
      (mask && !BroadcastStrides(*mask, full, mask_st))) {
    r.message = "bias or mask shape does not broadcast to [B,Hq,T,S]";
    return r;
  }
  const bool want_scores = Option(c, "scores", 0.0) != 0.0;
  const std::string policy = StringOption(c, "policy", "zero");
  std::vector<float> out(static_cast<size_t>(B * T * Hq * Dv), -7.75e30f);
  std::vector<float> scores(
      want_scores ? static_cast<size_t>(B * Hq * T * S) : 0, -7.75e30f);
  std::unique_ptr<pthreadpool, PoolDeleter> pool(
      threads > 1 ? pthreadpool_create(static_cast<size_t>(threads)) : nullptr);

  // One call for all batches, or one per batch where offsets differ.
  const int64_t calls = offsets ? B : 1, Bc = offsets ? 1 : B;
  for (int64_t b = 0; b < calls; ++b) {
    gqa_attention_params p;
    gqa_attention_params_init(&p);
    p.batch = Bc;
    p.q_len = T;
    p.kv_len = S;
    p.q_heads = Hq;
    p.kv_heads = Hkv;
    p.head_dim = D;
    p.value_dim = Dv;
    const int64_t qo = b * T * Hq * D, ko = b * S * Hkv * D,
                  vo = b * S * Hkv * Dv;
    p.q = f16_q ? static_cast<const void*>(qh.data() + qo) : q.data() + qo;
    p.q_dtype = f16_q ? GQA_DTYPE_F16 : GQA_DTYPE_F32;
    p.k = f16_kv ? static_cast<const void*>(kh.data() + ko) : k.data() + ko;
    p.v = f16_kv ? static_cast<const void*>(vh.data() + vo) : v.data() + vo;
    p.kv_dtype = f16_kv ? GQA_DTYPE_F16 : GQA_DTYPE_F32;
    p.out = out.data() + b * T * Hq * Dv;
    p.scale = static_cast<float>(Option(c, "scale", 0.0));
    p.softcap = static_cast<float>(Option(c, "softcap", 0.0));
    p.causal = Option(c, "causal", 0.0) != 0.0;
    p.position_offset = offsets ? offsets->i64[b] : 0;
    p.sliding_window = static_cast<int64_t>(Option(c, "window", 0.0));
    if (key_lengths) p.key_lengths = key_lengths->i64.data() + b;
    if (key_mask) p.key_mask = key_mask->u8.data() + b * S;
    if (mask) {
      p.mask = mask->u8.data() + b * mask_st[0];
      p.mask_stride_batch = mask_st[0];
      p.mask_stride_head = mask_st[1];
      p.mask_stride_query = mask_st[2];
      p.mask_stride_key = mask_st[3];
    }
    if (bias) {
      p.bias = bias->f32.data() + b * bias_st[0];
      p.bias_stride_batch = bias_st[0];
      p.bias_stride_head = bias_st[1];
      p.bias_stride_query = bias_st[2];
      p.bias_stride_key = bias_st[3];
    }
    if (alibi) p.alibi_slopes = alibi->f32.data();
    if (sinks) p.sinks = sinks->f32.data();
    p.fully_masked_policy =
        policy == "uniform" ? GQA_FULLY_MASKED_UNIFORM : GQA_FULLY_MASKED_ZERO;
    if (want_scores) p.scores = scores.data() + b * Hq * T * S;
    size_t ws_size = 0;
    gqa_status st =
        gqa_attention_workspace_size(&p, threads > 1 ? threads : 1, &ws_size);
    std::unique_ptr<void, FreeDeleter> ws(
        st == GQA_STATUS_OK
            ? aligned_alloc(GQA_WORKSPACE_ALIGNMENT, (ws_size + 63) / 64 * 64)
            : nullptr);
    if (st == GQA_STATUS_OK)
      st = gqa_attention(&p, ws.get(), ws_size, pool.get());
    if (st != GQA_STATUS_OK) {
      r.message =
          std::string(gqa_status_name(st)) + ": " + gqa_last_error_message();
      return r;
    }
  }
  if (out_copy) *out_copy = out;
  // NaN where both are NaN counts as equal.
  auto compare = [&](std::vector<float> got, std::vector<float> want,
                     const char* what) {
    for (size_t i = 0; i < got.size() && i < want.size(); ++i) {
      if (isnan(got[i]) && isnan(want[i])) got[i] = want[i] = 0.0f;
    }
    const reference::Closeness cmp =
        reference::Compare(got, want, c.tolerance.rtol, c.tolerance.atol);
    if (!(cmp.max_abs_err <= r.max_abs_err)) r.max_abs_err = cmp.max_abs_err;
    return cmp.pass() ? std::string() : cmp.Describe(what);
  };
  std::string fail = compare(out, File(c, "out")->f32, "out");
  if (fail.empty() && want_scores) {
    const LlmArray* want = File(c, "scores");
    fail = want ? compare(scores, want->f32, "scores")
                : "options.scores is set but there is no scores file";
  }
  if (!fail.empty()) {
    r.message = fail;
    return r;
  }
  r.outcome = LlmOutcome::kPassed;
  char buf[120];
  snprintf(buf, sizeof(buf), "%lld call(s), max_abs_err %.3e",
           static_cast<long long>(calls), r.max_abs_err);
  r.message = buf;
  return r;
}

}  // namespace gqa
