// The steps both layer forwards share: validation of the call, the
// workspace regions, the projections in, and the gate + output projection
// out.
#include <stdint.h>

#include "gqa/gqa.h"
#include "src/attention_core.h"
#include "src/elementwise.h"
#include "src/layer_internal.h"
#include "src/status.h"

namespace gqa {

AttentionParams CoreShape(const gqa_layer& L, int64_t B, int64_t T, int64_t S) {
  AttentionParams p;
  p.batch = B;
  p.q_len = T;
  p.kv_len = S;
  p.q_heads = L.config.num_query_heads;
  p.kv_heads = L.config.num_key_value_heads;
  p.head_dim = L.config.head_dim;
  return p;
}

bool PlanRegions(const gqa_layer& L, int64_t B, int64_t T, int64_t S,
                 LayerPlan* plan) {
  const gqa_layer_config& c = L.config;
  int64_t bt, bs;
  if (!CheckedMul(B, T, &bt) || !CheckedMul(B, S, &bs)) return false;
  const int64_t align = GQA_WORKSPACE_ALIGNMENT;
  int64_t offset = 0;
  bool ok = true;
  // rows * cols floats plus XNNPACK's slack, rounded to the alignment.
  auto region = [&](int64_t rows, int64_t cols) -> int64_t {
    int64_t n = 0, bytes = 0, next = 0;
    ok = ok && CheckedMul(rows, cols, &n) && CheckedMul(n, 4, &bytes) &&
         CheckedAdd(bytes, kXnnExtraBytes + align - 1, &bytes);
    if (!ok) return -1;
    bytes = bytes / align * align;
    const int64_t at = offset;
    ok = CheckedAdd(offset, bytes, &next);
    offset = next;
    return at;
  };
  plan->q = region(bt, L.query.ldc());
  plan->k = region(bs, L.key.ldc());
  plan->v = region(bs, L.value.ldc());
  plan->gate = c.use_gate ? region(bt, L.gate.ldc()) : -1;
  plan->attn = region(bt, L.q_width);
  if (L.f16) {
    int64_t x = 0, y = 0, z = 0;
    ok = ok && CheckedMul(bt, c.query_features, &x) &&
         CheckedMul(bs, c.key_features, &y) &&
         CheckedMul(bs, c.value_features, &z);
    if (!ok) return false;
    const int64_t most = x > y ? (x > z ? x : z) : (y > z ? y : z);
    plan->x32 = region(most, 1);
    plan->out32 = region(bt, L.output.ldc());
  } else {
    int64_t widest = c.query_features;
    if (c.key_features > widest) widest = c.key_features;
    if (c.value_features > widest) widest = c.value_features;
    plan->tail = region(1, widest);
  }
  if (!ok) return false;
  plan->core = offset;
  plan->need.fixed = offset;
  return true;
}

// batch, query_len and value_len as a forward takes them: > 0, positions
// below the core's limit (the kernels compare them as f32), every tensor's
// element count representable. The size queries check the same, so no plan
// is made for a shape that a forward would refuse.
gqa_status ValidateShape(const gqa_layer& L, int64_t B, int64_t T, int64_t S) {
  const gqa_layer_config& c = L.config;
  const struct {
    const char* name;
    int64_t value;
  } sizes[] = {{"batch", B}, {"query_len", T}, {"value_len", S}};
  for (const auto& s : sizes) {
    if (s.value <= 0) {
      return Fail(GQA_STATUS_INVALID_SIZE, "`%s` must be > 0, got %lld", s.name,
                  static_cast<long long>(s.value));
    }
  }
  if (T > kMaxPosition || S > kMaxPosition) {
    return Fail(GQA_STATUS_SIZE_OVERFLOW,
                "query_len and value_len must be <= 2^24 (got %lld, %lld)",
                static_cast<long long>(T), static_cast<long long>(S));
  }
  int64_t n = 0;
  if (!CheckedProduct({B, T, c.query_features}, kMaxElements, &n) ||
      !CheckedProduct({B, S, c.value_features}, kMaxElements, &n) ||
      !CheckedProduct({B, S, c.key_features}, kMaxElements, &n) ||
      !CheckedProduct({B, T, c.num_query_heads, c.head_dim}, kMaxElements,
                      &n) ||
      !CheckedProduct({B, S, c.num_key_value_heads, c.head_dim}, kMaxElements,
                      &n) ||
      !CheckedProduct({B, c.num_query_heads, T, S}, INT64_MAX >> 3, &n)) {
    return Fail(GQA_STATUS_SIZE_OVERFLOW,
                "tensor sizes overflow (B=%lld, T=%lld, S=%lld)",
                static_cast<long long>(B), static_cast<long long>(T),
                static_cast<long long>(S));
  }
  return GQA_STATUS_OK;
}

gqa_status ValidateForward(const gqa_layer* L, const gqa_forward_args* a) {
  if (L == nullptr) return Fail(GQA_STATUS_NULL_POINTER, "layer is NULL");
  if (a == nullptr) return Fail(GQA_STATUS_NULL_POINTER, "args is NULL");
  const gqa_layer_config& c = L->config;
  const int64_t B = a->batch, T = a->query_len, S = a->value_len;
  gqa_status st = ValidateShape(*L, B, T, S);
  if (st != GQA_STATUS_OK) return st;
  if (!a->query) return Fail(GQA_STATUS_NULL_POINTER, "`query` is NULL");
  if (!a->value) return Fail(GQA_STATUS_NULL_POINTER, "`value` is NULL");
  if (!a->output) return Fail(GQA_STATUS_NULL_POINTER, "`output` is NULL");
  if (!a->key && c.key_features != c.value_features) {
    return Fail(GQA_STATUS_SHAPE_MISMATCH,
                "`key` omitted, so value is used as key, but the key kernel "
                "expects %lld features and value has %lld",
                static_cast<long long>(c.key_features),
                static_cast<long long>(c.value_features));
  }
  // Element counts bounded by ValidateShape.
  const int64_t xq = B * T * c.query_features;
  const int64_t xk = B * S * c.key_features;
  const int64_t xv = B * S * c.value_features;
  const int64_t n_scores = B * c.num_query_heads * T * S;
  // The output [B, T, Fq] is written after the inputs are read, but with a
  // pool the projections of one thread may still read what another wrote:
  // it must not overlap any input.
  const int64_t es = c.dtype == GQA_DTYPE_F16 ? 2 : 4;
  const ByteRange out = RangeOf(a->output, xq, es);
  const struct {
    const char* name;
    ByteRange range;
  } inputs[] = {{"query", RangeOf(a->query, xq, es)},
                {"value", RangeOf(a->value, xv, es)},
                {"key", RangeOf(a->key, xk, es)}};
  const ByteRange scores = RangeOf(a->scores, n_scores, es);
  for (const auto& in : inputs) {
    if (Overlap(out, in.range) || Overlap(scores, in.range)) {
      return Fail(GQA_STATUS_INVALID_ARGUMENT,
                  "`%s` overlaps `%s` (outputs must not alias inputs)",
                  Overlap(out, in.range) ? "output" : "scores", in.name);
    }
  }
  if (Overlap(out, scores)) {
    return Fail(GQA_STATUS_INVALID_ARGUMENT, "`output` overlaps `scores`");
  }
  if (a->attention_mask) {
    const int32_t rank = a->attention_mask_rank;
    if (rank != 2 && rank != 3 && rank != 4) {
      return Fail(GQA_STATUS_INVALID_MASK_RANK,
                  "attention_mask must have rank 2 (T,S), 3 (B,T,S) or 4 "
                  "(B,Hq,T,S); got rank %d",
                  static_cast<int>(rank));
    }
    const int64_t full4[4] = {B, c.num_query_heads, T, S};
    const char* names4[4] = {"batch", "head", "query", "key"};
    // Size-1 axes are inserted at -3: (T,S) -> (1,1,T,S), (B,T,S) -> (B,1,T,S).
    static const int kAxisOf[3][4] = {{2, 3, 0, 0}, {0, 2, 3, 0}, {0, 1, 2, 3}};
    for (int i = 0; i < rank; ++i) {
      const int axis = kAxisOf[rank - 2][i];
      const int64_t d = a->attention_mask_dims[i];
      if (d <= 0) {
        return Fail(GQA_STATUS_INVALID_SIZE,
                    "attention_mask dimension %d is %lld (must be > 0)", i,
                    static_cast<long long>(d));
      }
      if (d != 1 && d != full4[axis]) {
        return Fail(GQA_STATUS_MASK_NOT_BROADCASTABLE,
                    "The `mask` must be broadcastable to (B,Hq,T,S) = "
                    "(%lld,%lld,%lld,%lld): its %s axis has size %lld",
                    static_cast<long long>(B),
                    static_cast<long long>(c.num_query_heads),
                    static_cast<long long>(T), static_cast<long long>(S),
                    names4[axis], static_cast<long long>(d));
      }
    }
  }
  return GQA_STATUS_OK;
}

gqa_status FitAndProject(const gqa_layer& L, const gqa_forward_args& a,
                         const LayerPlan& plan, void* workspace,
                         size_t workspace_size, pthreadpool_t pool,
                         int64_t* slots) {
  const gqa_status fit =
      FitWorkspace(plan.need, workspace, workspace_size, pool, slots);
  if (fit != GQA_STATUS_OK) return fit;
  unsigned char* ws = static_cast<unsigned char*>(workspace);
  const gqa_layer_config& c = L.config;
  auto at = [ws](int64_t offset) {
    return offset < 0 ? nullptr : reinterpret_cast<float*>(ws + offset);
  };
  const int64_t BT = a.batch * a.query_len, BS = a.batch * a.value_len;
  const void* key = a.key ? a.key : a.value;
  // f16 inputs are converted to f32 once each (the query feeds the gate too).
  float* x32 = at(plan.x32);
  auto input = [&](const void* src, int64_t count) -> const float* {
    if (!L.f16) return static_cast<const float*>(src);
    ConvertF16ToF32(static_cast<const uint16_t*>(src), x32,
                    static_cast<size_t>(count));
    return x32;
  };
  float* tail = at(plan.tail);  // null on the f16 path
  gqa_status s;
  const float* query = input(a.query, BT * c.query_features);
  if ((s = L.query.Run(BT, query, at(plan.q), tail, pool)) != GQA_STATUS_OK) {
    return s;
  }
  if (c.use_gate &&
      (s = L.gate.Run(BT, query, at(plan.gate), tail, pool)) != GQA_STATUS_OK) {
    return s;
  }
  const float* k_in = input(key, BS * c.key_features);
  if ((s = L.key.Run(BS, k_in, at(plan.k), tail, pool)) != GQA_STATUS_OK) {
    return s;
  }
  // Value as key on the f16 path: already in x32.
  const float* v_in =
      (L.f16 && !a.key) ? x32 : input(a.value, BS * c.value_features);
  return L.value.Run(BS, v_in, at(plan.v), tail, pool);
}

gqa_status Finish(const gqa_layer& L, const gqa_forward_args& a,
                  const LayerPlan& plan, unsigned char* ws,
                  pthreadpool_t pool) {
  const gqa_layer_config& c = L.config;
  const int64_t BT = a.batch * a.query_len;
  float* attn = reinterpret_cast<float*>(ws + plan.attn);
  if (c.use_gate) {
    GateRows(attn, L.q_width, reinterpret_cast<const float*>(ws + plan.gate),
             L.gate.ldc(), BT, L.q_width);
  }
  // attn lives in the workspace with slack: XNNPACK may over-read it.
  if (!L.f16) {
    return L.output.Run(BT, attn, static_cast<float*>(a.output), nullptr, pool);
  }
  float* out32 = reinterpret_cast<float*>(ws + plan.out32);
  const gqa_status s = L.output.Run(BT, attn, out32, nullptr, pool);
  if (s != GQA_STATUS_OK) return s;
  ConvertRowsF32ToF16(out32, L.output.ldc(), static_cast<uint16_t*>(a.output),
                      c.query_features, BT, c.query_features);
  return GQA_STATUS_OK;
}

}  // namespace gqa
