// The layer's plain forward: queries against the call's own keys and
// values (masks, scores, dropout), planned once and run from the plan.
#include <stdint.h>

#include "gqa/gqa.h"
#include "src/attention_core.h"
#include "src/layer_internal.h"
#include "src/operator.h"
#include "src/status.h"

namespace gqa {
namespace {

// Fills the mask fields of the attention parameters from the call.
void WireMasks(const gqa_layer& L, const gqa_forward_args& a,
               AttentionParams* p) {
  p->query_mask = a.query_mask;
  p->key_mask = a.value_mask;
  p->key_mask2 = a.key_mask;
  p->causal = a.use_causal_mask != 0;
  p->sliding_window = EffectiveWindow(L.config.sliding_window);
  if (a.attention_mask) {
    int64_t dims[4] = {1, 1, 1, 1};
    const int rank = a.attention_mask_rank;
    if (rank == 2) {
      dims[2] = a.attention_mask_dims[0];
      dims[3] = a.attention_mask_dims[1];
    } else if (rank == 3) {
      dims[0] = a.attention_mask_dims[0];
      dims[2] = a.attention_mask_dims[1];
      dims[3] = a.attention_mask_dims[2];
    } else {
      for (int i = 0; i < 4; ++i) dims[i] = a.attention_mask_dims[i];
    }
    int64_t strides[4];
    int64_t stride = 1;
    for (int i = 3; i >= 0; --i) {
      strides[i] = dims[i] == 1 ? 0 : stride;
      stride *= dims[i];
    }
    p->mask = a.attention_mask;
    p->mask_stride_batch = strides[0];
    p->mask_stride_head = strides[1];
    p->mask_stride_query = strides[2];
    p->mask_stride_key = strides[3];
  }
}

// The core's descriptor of a forward: everything but the workspace
// pointers (bound by Attend). The plan is made from it: the kernel choice
// depends on the masks, scores and dropout, the workspace on shapes only.
AttentionParams CoreParams(const gqa_layer& L, const gqa_forward_args& a) {
  const gqa_layer_config& c = L.config;
  const int64_t T = a.query_len, S = a.value_len;
  const int64_t q_cols = L.query.ldc(), kv_cols = L.key.ldc();
  AttentionParams p = CoreShape(L, a.batch, T, S);
  p.q_stride_token = q_cols;
  p.q_stride_batch = T * q_cols;
  p.q_stride_head = c.head_dim;
  p.k_stride_token = p.v_stride_token = kv_cols;
  p.k_stride_batch = p.v_stride_batch = S * kv_cols;
  p.k_stride_head = p.v_stride_head = c.head_dim;
  p.out_stride_token = L.q_width;
  p.out_stride_batch = T * L.q_width;
  p.out_stride_head = c.head_dim;
  p.scale = ResolveScale(0.0f, c.head_dim);
  WireMasks(L, a, &p);
  p.fully_masked_uniform = UniformFullyMasked(
      c.fully_masked_policy, c.dropout > 0.0f || a.scores != nullptr);
  p.scores = a.scores;
  p.scores_type = L.f16 ? ElemType::kF16 : ElemType::kF32;
  p.apply_dropout = a.training != 0 && c.dropout > 0.0f;
  p.dropout_rate = c.dropout;
  p.keep_mask = a.dropout_keep_mask;
  p.seed = c.seed;
  return p;
}

// The whole workspace plan: regions, then the core's for `core`.
bool PlanForward(const gqa_layer& L, const AttentionParams& core,
                 LayerPlan* plan) {
  if (!PlanRegions(L, core.batch, core.q_len, core.kv_len, plan)) return false;
  plan->attention = PlanAttention(core);
  plan->need.slot = plan->attention.slot_bytes;
  return CheckedAdd(plan->need.fixed, plan->attention.shared_bytes,
                    &plan->need.fixed) &&
         WorkspaceBytes(plan->need, 1) >= 0;
}

// 2. Attention over the projected q, k, v: attn [B, T, Hq, D].
void Attend(const LayerPlan& plan, AttentionParams p, unsigned char* ws,
            int64_t slots, pthreadpool_t pool) {
  p.q = ws + plan.q;
  p.k = ws + plan.k;
  p.v = ws + plan.v;
  p.out = ws + plan.attn;
  RunAttention(p, plan.attention, ws + plan.core, slots, pool);
}

}  // namespace
}  // namespace gqa

using gqa::Fail;

extern "C" {

gqa_status gqa_layer_workspace_size(gqa_layer_t layer, int64_t batch,
                                    int64_t query_len, int64_t value_len,
                                    int64_t max_threads, size_t* size_out) {
  if (!layer) return Fail(GQA_STATUS_NULL_POINTER, "layer is NULL");
  if (!size_out) return Fail(GQA_STATUS_NULL_POINTER, "size_out is NULL");
  gqa_status s = gqa::ValidateShape(*layer, batch, query_len, value_len);
  if (s != GQA_STATUS_OK) return s;
  if (max_threads <= 0) {
    return Fail(GQA_STATUS_INVALID_SIZE, "max_threads must be > 0, got %lld",
                static_cast<long long>(max_threads));
  }
  // The workspace depends on the shapes only (src/attention_core.h).
  gqa::LayerPlan plan;
  if (!gqa::PlanForward(
          *layer, gqa::CoreShape(*layer, batch, query_len, value_len), &plan)) {
    return Fail(GQA_STATUS_SIZE_OVERFLOW, "workspace size overflows");
  }
  return gqa::WorkspaceSizeFor(plan.need, max_threads, size_out);
}

gqa_status gqa_layer_forward(gqa_layer_t L, const gqa_forward_args* args,
                             void* workspace, size_t workspace_size,
                             pthreadpool_t pool) {
  gqa_status s = gqa::ValidateForward(L, args);
  if (s != GQA_STATUS_OK) return s;
  const gqa_forward_args& a = *args;
  const gqa::AttentionParams core = gqa::CoreParams(*L, a);
  gqa::LayerPlan plan;
  if (!gqa::PlanForward(*L, core, &plan)) {
    return Fail(GQA_STATUS_SIZE_OVERFLOW, "workspace size overflows");
  }
  int64_t slots = 0;
  if ((s = gqa::FitAndProject(*L, a, plan, workspace, workspace_size, pool,
                              &slots)) != GQA_STATUS_OK) {
    return s;
  }
  unsigned char* ws = static_cast<unsigned char*>(workspace);
  gqa::Attend(plan, core, ws, slots, pool);
  return gqa::Finish(*L, a, plan, ws, pool);
}

}  // extern "C"
