// The layer's cached forward over a KV cache v2 (gqa/block_cache.h): T new
// tokens are projected, appended (rotated / quantized) into the caller's
// blocks and attend to everything cached. The cache is validated once and
// the attend planned once (PlanBlockAttend).
#include <stdint.h>

#include "gqa/block_cache.h"
#include "gqa/gqa.h"
#include "src/block_cache.h"
#include "src/layer_internal.h"
#include "src/operator.h"
#include "src/status.h"

namespace gqa {
namespace {

gqa_status CheckBlockCacheMatches(const gqa_layer& L, const BlockCacheView& v,
                                  int64_t batch) {
  const gqa_block_cache_config& c = v.cache->config;
  if (c.kv_heads != L.config.num_key_value_heads ||
      c.head_dim != L.config.head_dim || v.value_dim != L.config.head_dim) {
    return Fail(GQA_STATUS_SHAPE_MISMATCH,
                "cache has Hkv=%lld D=%lld Dv=%lld, the layer Hkv=%lld D=%lld",
                static_cast<long long>(c.kv_heads),
                static_cast<long long>(c.head_dim),
                static_cast<long long>(v.value_dim),
                static_cast<long long>(L.config.num_key_value_heads),
                static_cast<long long>(L.config.head_dim));
  }
  if (batch >= 0 && c.batch != batch) {
    return Fail(GQA_STATUS_SHAPE_MISMATCH,
                "cache batch %lld != call batch %lld",
                static_cast<long long>(c.batch), static_cast<long long>(batch));
  }
  return GQA_STATUS_OK;
}

// The call, the cache (once), the append and the ring rule, before any
// write.
gqa_status ValidateBlockCached(const gqa_layer* L, const gqa_forward_args* a,
                               const gqa_block_cache* cache,
                               BlockCacheView* v) {
  gqa_status s = ValidateCachedArgs(L, a);
  if (s != GQA_STATUS_OK) return s;
  if ((s = ValidateBlockCache(cache, v)) != GQA_STATUS_OK) return s;
  if ((s = CheckBlockCacheMatches(*L, *v, a->batch)) != GQA_STATUS_OK) {
    return s;
  }
  static const float kProbe[1] = {0.0f};
  if ((s = ValidateBlockAppend(*v, a->query_len, nullptr, kProbe, kProbe,
                               GQA_DTYPE_F32)) != GQA_STATUS_OK) {
    return s;
  }
  if (v->ring) {
    s = CheckRingWindow(cache->config.capacity, L->config.sliding_window,
                        a->query_len);
    if (s != GQA_STATUS_OK) return s;
  }
  return CheckAttendHeld(PositionsOf(*v), a->query_len,
                         EffectiveWindow(L->config.sliding_window),
                         a->query_len);
}

}  // namespace
}  // namespace gqa

using gqa::Fail;

extern "C" {

gqa_status gqa_layer_block_cached_workspace_size(gqa_layer_t layer,
                                                 const gqa_block_cache* cache,
                                                 int64_t new_tokens,
                                                 int64_t max_threads,
                                                 size_t* size_out) {
  if (!layer) return Fail(GQA_STATUS_NULL_POINTER, "layer is NULL");
  if (!size_out) return Fail(GQA_STATUS_NULL_POINTER, "size_out is NULL");
  if (max_threads <= 0) {
    return Fail(GQA_STATUS_INVALID_SIZE, "max_threads must be > 0, got %lld",
                static_cast<long long>(max_threads));
  }
  gqa::BlockCacheView v;
  gqa_status s = gqa::ValidateBlockCache(cache, &v);
  if (s != GQA_STATUS_OK) return s;
  if ((s = gqa::CheckBlockCacheMatches(*layer, v, -1)) != GQA_STATUS_OK) {
    return s;
  }
  const int64_t B = cache->config.batch;
  s = gqa::ValidateShape(*layer, B, new_tokens, new_tokens);
  if (s != GQA_STATUS_OK) return s;
  const gqa::BlockAttendPlan attend = gqa::PlanBlockAttend(
      v, gqa::CachedAttendParams(*layer, new_tokens, nullptr, nullptr));
  gqa::LayerPlan plan;
  if (!gqa::PlanCachedRegions(*layer, B, new_tokens, attend.need, &plan)) {
    return Fail(GQA_STATUS_SIZE_OVERFLOW, "workspace size overflows");
  }
  return gqa::WorkspaceSizeFor(plan.need, max_threads, size_out);
}

gqa_status gqa_layer_forward_block_cached(
    gqa_layer_t L, const gqa_forward_args* args, gqa_block_cache* cache,
    void* workspace, size_t workspace_size, pthreadpool_t pool) {
  gqa::BlockCacheView v;
  gqa_status s = gqa::ValidateBlockCached(L, args, cache, &v);
  if (s != GQA_STATUS_OK) return s;
  const gqa_forward_args& a = *args;
  const int64_t T = a.query_len;
  gqa::BlockAttendPlan attend =
      gqa::PlanBlockAttend(v, gqa::CachedAttendParams(*L, T, nullptr, nullptr));
  gqa::CachedTreeMask(a, &attend.core.tree_mask,
                      &attend.core.tree_stride_batch);
  gqa::LayerPlan plan;
  if (!gqa::PlanCachedRegions(*L, a.batch, T, attend.need, &plan)) {
    return Fail(GQA_STATUS_SIZE_OVERFLOW, "workspace size overflows");
  }
  int64_t slots = 0;
  if ((s = gqa::FitAndProject(*L, a, plan, workspace, workspace_size, pool,
                              &slots)) != GQA_STATUS_OK) {
    return s;
  }
  unsigned char* ws = static_cast<unsigned char*>(workspace);
  gqa::AppendBlockRows(v, cache, T, nullptr, ws + plan.k, ws + plan.v,
                       GQA_DTYPE_F32, L->key.ldc(), L->value.ldc());
  gqa::RunBlockAttend(v, attend, ws + plan.q, L->query.ldc(), ws + plan.attn,
                      ws + plan.core, slots, pool);
  return gqa::Finish(*L, a, plan, ws, pool);
}

}  // extern "C"
