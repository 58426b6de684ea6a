// The public attention-core operator: validates a gqa_attention_params,
// resolves default strides and scale, and runs the core on the caller's
// workspace.
#include "gqa/attention.h"

#include <math.h>
#include <pthreadpool.h>
#include <stdint.h>
#include <string.h>

#include "src/attention_core.h"
#include "src/operator.h"
#include "src/status.h"

namespace {

using gqa::CheckedAdd;
using gqa::CheckedMul;
using gqa::Fail;

using gqa::DtypeBytes;
using gqa::ToElem;

// Fills default strides of a [B, L, H, D] view (computed with checked
// arithmetic); checks the largest offset it can touch fits, and returns one
// past it in *end (elements).
gqa_status ResolveView(const char* name, int64_t B, int64_t L, int64_t H,
                       int64_t D, int64_t* sb, int64_t* st, int64_t* sh,
                       int64_t* end) {
  if (*sb == 0 && *st == 0 && *sh == 0) {
    int64_t hd = 0, lhd = 0;
    if (!CheckedMul(H, D, &hd) || !CheckedMul(L, hd, &lhd)) {
      return Fail(GQA_STATUS_SIZE_OVERFLOW,
                  "`%s` default strides overflow (L=%lld, H=%lld, D=%lld)",
                  name, static_cast<long long>(L), static_cast<long long>(H),
                  static_cast<long long>(D));
    }
    *sh = D;
    *st = hd;
    *sb = lhd;
  }
  if (*sb < 0 || *st < 0 || *sh < 0) {
    return Fail(GQA_STATUS_INVALID_ARGUMENT,
                "`%s` strides must be >= 0 (got %lld, %lld, %lld)", name,
                static_cast<long long>(*sb), static_cast<long long>(*st),
                static_cast<long long>(*sh));
  }
  // A stride is a distance inside one buffer: bounded like any extent, so
  // that the kernels' byte strides (stride * element size) cannot overflow
  // even where the axis has one element.
  if (*sb > gqa::kMaxElements || *st > gqa::kMaxElements ||
      *sh > gqa::kMaxElements) {
    return Fail(GQA_STATUS_SIZE_OVERFLOW,
                "`%s` strides must be <= 2^48 (got %lld, %lld, %lld)", name,
                static_cast<long long>(*sb), static_cast<long long>(*st),
                static_cast<long long>(*sh));
  }
  int64_t a = 0, b = 0, c = 0, e = 0;
  if (!CheckedMul(B - 1, *sb, &a) || !CheckedMul(L - 1, *st, &b) ||
      !CheckedMul(H - 1, *sh, &c) || !CheckedAdd(a, b, &e) ||
      !CheckedAdd(e, c, &e) || !CheckedAdd(e, D, &e) || e > gqa::kMaxElements) {
    return Fail(GQA_STATUS_SIZE_OVERFLOW, "`%s` view overflows", name);
  }
  *end = e;
  return GQA_STATUS_OK;
}

// One past the largest element a [B, Hq, T, S] view (the general mask, the
// bias) reaches through its strides (stride 0 = broadcast), into *end.
gqa_status Extent4(const char* name, const gqa_attention_params& p,
                   const int64_t strides[4], int64_t* end) {
  const int64_t extents[4] = {p.batch, p.q_heads, p.q_len, p.kv_len};
  int64_t e = 1;
  for (int i = 0; i < 4; ++i) {
    if (strides[i] < 0) {
      return Fail(GQA_STATUS_INVALID_ARGUMENT, "%s strides must be >= 0", name);
    }
    int64_t t = 0;
    if (strides[i] > gqa::kMaxElements ||
        !CheckedMul(extents[i] - 1, strides[i], &t) || !CheckedAdd(e, t, &e) ||
        e > gqa::kMaxElements) {
      return Fail(GQA_STATUS_SIZE_OVERFLOW,
                  "the %s view overflows (strides %lld, %lld, %lld, %lld)",
                  name, static_cast<long long>(strides[0]),
                  static_cast<long long>(strides[1]),
                  static_cast<long long>(strides[2]),
                  static_cast<long long>(strides[3]));
    }
  }
  *end = e;
  return GQA_STATUS_OK;
}

// Outputs (out, scores) never overlap an input or each other: the kernels
// read inputs while workers write outputs, so the result would depend on the
// thread count. `*_end`: one past the last element each view reaches.
gqa_status CheckAliasing(const gqa_attention_params& p, int64_t q_end,
                         int64_t k_end, int64_t v_end, int64_t out_end,
                         int64_t mask_end, int64_t bias_end) {
  const int64_t es = 1;
  auto elem = DtypeBytes;
  const gqa::ByteRange out_r = gqa::RangeOf(p.out, out_end, elem(p.out_dtype));
  const gqa::ByteRange scores_r = gqa::RangeOf(
      p.scores, p.batch * p.q_heads * p.q_len * p.kv_len, elem(p.scores_dtype));
  const struct {
    const char* name;
    gqa::ByteRange range;
  } inputs[] = {
      {"q", gqa::RangeOf(p.q, q_end, elem(p.q_dtype))},
      {"k", gqa::RangeOf(p.k, k_end, elem(p.kv_dtype))},
      {"v", gqa::RangeOf(p.v, v_end, elem(p.kv_dtype))},
      {"mask", gqa::RangeOf(p.mask, mask_end, es)},
      {"key_mask", gqa::RangeOf(p.key_mask, p.batch * p.kv_len, es)},
      {"key_lengths", gqa::RangeOf(p.key_lengths, p.batch, 8)},
      {"bias", gqa::RangeOf(p.bias, bias_end, 4)},
      {"alibi_slopes", gqa::RangeOf(p.alibi_slopes, p.q_heads, 4)},
      {"sinks", gqa::RangeOf(p.sinks, p.q_heads, 4)},
  };
  for (const auto& in : inputs) {
    if (gqa::Overlap(out_r, in.range) || gqa::Overlap(scores_r, in.range)) {
      return Fail(GQA_STATUS_INVALID_ARGUMENT,
                  "`%s` overlaps `%s` (outputs must not alias inputs)",
                  gqa::Overlap(out_r, in.range) ? "out" : "scores", in.name);
    }
  }
  if (gqa::Overlap(out_r, scores_r)) {
    return Fail(GQA_STATUS_INVALID_ARGUMENT, "`out` overlaps `scores`");
  }
  return GQA_STATUS_OK;
}

// Validates p and builds the core's parameters from it.
// With shapes_only (the workspace query) pointers are neither required nor
// checked for aliasing.
gqa_status Prepare(const gqa_attention_params* in, bool shapes_only,
                   gqa::AttentionParams* out) {
  if (!in) return Fail(GQA_STATUS_NULL_POINTER, "params is NULL");
  gqa_attention_params p = *in;
  const struct {
    const char* name;
    int64_t value;
  } sizes[] = {{"batch", p.batch},       {"q_len", p.q_len},
               {"kv_len", p.kv_len},     {"q_heads", p.q_heads},
               {"kv_heads", p.kv_heads}, {"head_dim", p.head_dim}};
  for (const auto& s : sizes) {
    if (s.value <= 0) {
      return Fail(GQA_STATUS_INVALID_SIZE, "`%s` must be > 0, got %lld", s.name,
                  static_cast<long long>(s.value));
    }
  }
  if (p.value_dim < 0) {
    return Fail(GQA_STATUS_INVALID_SIZE,
                "`value_dim` must be 0 (head_dim) or > 0, got %lld",
                static_cast<long long>(p.value_dim));
  }
  const int64_t Dv = p.value_dim > 0 ? p.value_dim : p.head_dim;
  if (p.q_heads % p.kv_heads != 0) {
    return Fail(GQA_STATUS_HEADS_NOT_DIVISIBLE,
                "`q_heads` (%lld) must be divisible by `kv_heads` (%lld)",
                static_cast<long long>(p.q_heads),
                static_cast<long long>(p.kv_heads));
  }
  if (!shapes_only && (!p.q || !p.k || !p.v || !p.out)) {
    return Fail(GQA_STATUS_NULL_POINTER, "`%s` is NULL",
                !p.q   ? "q"
                : !p.k ? "k"
                : !p.v ? "v"
                       : "out");
  }
  gqa::CoreOptions options;
  options.q_dtype = p.q_dtype;
  options.kv_dtype = p.kv_dtype;
  options.out_dtype = p.out_dtype;
  options.scores_dtype = p.scores_dtype;
  options.fully_masked_policy = p.fully_masked_policy;
  options.scale = p.scale;
  options.sliding_window = p.sliding_window;
  gqa_status s = gqa::ValidateOptions(options);
  if (s != GQA_STATUS_OK) return s;
  if (p.position_offset < 0) {
    return Fail(GQA_STATUS_INVALID_ARGUMENT,
                "`position_offset` must be >= 0, got %lld",
                static_cast<long long>(p.position_offset));
  }
  int64_t n = 0;
  if (!gqa::CheckedProduct({p.batch, p.q_heads, p.q_len, p.kv_len},
                           INT64_MAX >> 3, &n)) {
    return Fail(
        GQA_STATUS_SIZE_OVERFLOW,
        "sizes overflow: B*Hq*T*S (B=%lld Hq=%lld T=%lld S=%lld)",
        static_cast<long long>(p.batch), static_cast<long long>(p.q_heads),
        static_cast<long long>(p.q_len), static_cast<long long>(p.kv_len));
  }
  if (!CheckedAdd(p.position_offset, p.q_len, &n) || n > gqa::kMaxPosition ||
      p.kv_len > gqa::kMaxPosition) {
    return Fail(GQA_STATUS_SIZE_OVERFLOW,
                "positions must stay below 2^24 (offset=%lld T=%lld S=%lld)",
                static_cast<long long>(p.position_offset),
                static_cast<long long>(p.q_len),
                static_cast<long long>(p.kv_len));
  }
  int64_t q_end = 0, k_end = 0, v_end = 0, out_end = 0;
  if ((s = ResolveView("q", p.batch, p.q_len, p.q_heads, p.head_dim,
                       &p.q_stride_batch, &p.q_stride_token, &p.q_stride_head,
                       &q_end)) != GQA_STATUS_OK ||
      (s = ResolveView("k", p.batch, p.kv_len, p.kv_heads, p.head_dim,
                       &p.k_stride_batch, &p.k_stride_token, &p.k_stride_head,
                       &k_end)) != GQA_STATUS_OK ||
      (s = ResolveView("v", p.batch, p.kv_len, p.kv_heads, Dv,
                       &p.v_stride_batch, &p.v_stride_token, &p.v_stride_head,
                       &v_end)) != GQA_STATUS_OK ||
      (s = ResolveView("out", p.batch, p.q_len, p.q_heads, Dv,
                       &p.out_stride_batch, &p.out_stride_token,
                       &p.out_stride_head, &out_end)) != GQA_STATUS_OK) {
    return s;
  }
  // q and out hold [B, T, Hq, D|Dv] elements (the plans are small
  // multiples).
  if (!gqa::CheckedProduct({p.batch, p.q_len, p.q_heads, p.head_dim},
                           gqa::kMaxElements, &n) ||
      !gqa::CheckedProduct({p.batch, p.q_len, p.q_heads, Dv}, gqa::kMaxElements,
                           &n)) {
    return Fail(GQA_STATUS_SIZE_OVERFLOW, "B*T*Hq*D or B*T*Hq*Dv exceeds 2^48");
  }
  if (p.key_lengths && !shapes_only) {
    for (int64_t b = 0; b < p.batch; ++b) {
      if (p.key_lengths[b] < 0 || p.key_lengths[b] > p.kv_len) {
        return Fail(GQA_STATUS_INVALID_ARGUMENT,
                    "key_lengths[%lld] = %lld is outside [0, kv_len=%lld]",
                    static_cast<long long>(b),
                    static_cast<long long>(p.key_lengths[b]),
                    static_cast<long long>(p.kv_len));
      }
    }
  }
  int64_t mask_end = 0, bias_end = 0;
  const int64_t mask_strides[4] = {p.mask_stride_batch, p.mask_stride_head,
                                   p.mask_stride_query, p.mask_stride_key};
  const int64_t bias_strides[4] = {p.bias_stride_batch, p.bias_stride_head,
                                   p.bias_stride_query, p.bias_stride_key};
  if (p.mask &&
      (s = Extent4("mask", p, mask_strides, &mask_end)) != GQA_STATUS_OK) {
    return s;
  }
  if (p.bias &&
      (s = Extent4("bias", p, bias_strides, &bias_end)) != GQA_STATUS_OK) {
    return s;
  }
  // Slopes and sinks are read only where pointers are checked.
  if ((s = gqa::ValidateLogitOptions(
           p.softcap, shapes_only ? nullptr : p.alibi_slopes,
           shapes_only ? nullptr : p.sinks, p.q_heads)) != GQA_STATUS_OK) {
    return s;
  }
  // Outputs never overlap an input or each other, and no two output
  // elements share an address: with a pool the result would depend on the
  // thread count.
  if (!shapes_only) {
    const int64_t ext[3] = {p.batch, p.q_len, p.q_heads};
    const int64_t str[3] = {p.out_stride_batch, p.out_stride_token,
                            p.out_stride_head};
    if (!gqa::ViewIsInjective(ext, str, Dv)) {
      return Fail(GQA_STATUS_INVALID_ARGUMENT,
                  "`out` strides (%lld, %lld, %lld) make output rows overlap",
                  static_cast<long long>(str[0]),
                  static_cast<long long>(str[1]),
                  static_cast<long long>(str[2]));
    }
  }
  if (!shapes_only &&
      (s = CheckAliasing(p, q_end, k_end, v_end, out_end, mask_end,
                         bias_end)) != GQA_STATUS_OK) {
    return s;
  }

  gqa::AttentionParams& c = *out;
  c = gqa::AttentionParams();
  c.batch = p.batch;
  c.q_len = p.q_len;
  c.kv_len = p.kv_len;
  c.q_heads = p.q_heads;
  c.kv_heads = p.kv_heads;
  c.head_dim = p.head_dim;
  c.value_dim = Dv;
  c.q = p.q;
  c.q_stride_batch = p.q_stride_batch;
  c.q_stride_token = p.q_stride_token;
  c.q_stride_head = p.q_stride_head;
  c.k = p.k;
  c.k_stride_batch = p.k_stride_batch;
  c.k_stride_token = p.k_stride_token;
  c.k_stride_head = p.k_stride_head;
  c.v = p.v;
  c.v_stride_batch = p.v_stride_batch;
  c.v_stride_token = p.v_stride_token;
  c.v_stride_head = p.v_stride_head;
  c.q_type = ToElem(p.q_dtype);
  c.kv_type = ToElem(p.kv_dtype);
  c.out = p.out;
  c.out_type = ToElem(p.out_dtype);
  c.out_stride_batch = p.out_stride_batch;
  c.out_stride_token = p.out_stride_token;
  c.out_stride_head = p.out_stride_head;
  c.scale = gqa::ResolveScale(p.scale, p.head_dim);
  c.causal = p.causal != 0;
  c.position_offset = p.position_offset;
  c.sliding_window = gqa::EffectiveWindow(p.sliding_window);
  c.key_lengths = p.key_lengths;
  c.key_mask = p.key_mask;
  c.mask = p.mask;
  c.mask_stride_batch = p.mask_stride_batch;
  c.mask_stride_head = p.mask_stride_head;
  c.mask_stride_query = p.mask_stride_query;
  c.mask_stride_key = p.mask_stride_key;
  c.softcap = p.softcap;
  c.alibi_slopes = p.alibi_slopes;
  c.bias = p.bias;
  c.bias_stride_batch = p.bias_stride_batch;
  c.bias_stride_head = p.bias_stride_head;
  c.bias_stride_query = p.bias_stride_query;
  c.bias_stride_key = p.bias_stride_key;
  c.sinks = p.sinks;
  c.scores = p.scores;
  c.scores_type = ToElem(p.scores_dtype);
  c.fully_masked_uniform =
      gqa::UniformFullyMasked(p.fully_masked_policy, p.scores != nullptr);
  return GQA_STATUS_OK;
}

}  // namespace

extern "C" {

void gqa_attention_params_init(gqa_attention_params* params) {
  if (params) memset(params, 0, sizeof(*params));
}

gqa_status gqa_attention_workspace_size(const gqa_attention_params* params,
                                        int64_t max_threads, size_t* size_out) {
  if (!size_out) return Fail(GQA_STATUS_NULL_POINTER, "size_out is NULL");
  if (max_threads <= 0) {
    return Fail(GQA_STATUS_INVALID_SIZE, "max_threads must be > 0, got %lld",
                static_cast<long long>(max_threads));
  }
  // Only the shapes matter: validate those.
  gqa::AttentionParams core;
  const gqa_status s = Prepare(params, /*shapes_only=*/true, &core);
  if (s != GQA_STATUS_OK) return s;
  const gqa::AttentionPlan plan = gqa::PlanAttention(core);
  return gqa::WorkspaceSizeFor({plan.shared_bytes, plan.slot_bytes},
                               max_threads, size_out);
}

gqa_status gqa_alibi_slopes(int64_t heads, float max_bias, float* slopes) {
  if (!slopes) return Fail(GQA_STATUS_NULL_POINTER, "slopes is NULL");
  if (heads <= 0 || heads > gqa::kMaxPosition) {
    return Fail(GQA_STATUS_INVALID_SIZE,
                "`heads` must be in [1, 2^24], got %lld",
                static_cast<long long>(heads));
  }
  if (!(max_bias > 0.0f) || isinf(max_bias)) {
    return Fail(GQA_STATUS_INVALID_ARGUMENT,
                "`max_bias` must be finite and > 0, got %g",
                static_cast<double>(max_bias));
  }
  int64_t n = 1;
  while (n * 2 <= heads) n *= 2;  // 2^floor(log2(heads))
  const double bias = max_bias, dn = static_cast<double>(n);
  for (int64_t h = 0; h < heads; ++h) {
    const double e =
        h < n ? -bias * static_cast<double>(h + 1) / dn
              : -bias * static_cast<double>(2 * (h - n) + 1) / (2.0 * dn);
    slopes[h] = static_cast<float>(exp2(e));
  }
  return GQA_STATUS_OK;
}

gqa_status gqa_attention(const gqa_attention_params* params, void* workspace,
                         size_t workspace_size, pthreadpool_t threadpool) {
  gqa::AttentionParams core;
  gqa_status s = Prepare(params, /*shapes_only=*/false, &core);
  if (s != GQA_STATUS_OK) return s;
  const gqa::AttentionPlan plan = gqa::PlanAttention(core);
  int64_t slots = 0;
  if ((s = gqa::FitWorkspace({plan.shared_bytes, plan.slot_bytes}, workspace,
                             workspace_size, threadpool, &slots)) !=
      GQA_STATUS_OK) {
    return s;
  }
  gqa::RunAttention(core, plan, workspace, slots, threadpool);
  return GQA_STATUS_OK;
}

}  // extern "C"
