// The layer's cached forward: T new tokens are projected, appended to the
// caller's KV cache and attend to everything cached (causal inference). The
// cache is validated once and the attend planned once (PlanAttend), and the
// plan carries the call to the end.
#include <stdint.h>
#include <string.h>

#include "gqa/gqa.h"
#include "gqa/kv_cache.h"
#include "src/kv_cache.h"
#include "src/layer_internal.h"
#include "src/operator.h"
#include "src/status.h"

namespace gqa {
namespace {

gqa_status CheckCacheMatches(const gqa_layer& L, const gqa_kv_cache& cache) {
  if (cache.kv_heads != L.config.num_key_value_heads ||
      cache.head_dim != L.config.head_dim) {
    return Fail(GQA_STATUS_SHAPE_MISMATCH,
                "cache has Hkv=%lld D=%lld, the layer Hkv=%lld D=%lld",
                static_cast<long long>(cache.kv_heads),
                static_cast<long long>(cache.head_dim),
                static_cast<long long>(L.config.num_key_value_heads),
                static_cast<long long>(L.config.head_dim));
  }
  return GQA_STATUS_OK;
}

}  // namespace

gqa_kv_attend_params CachedAttendParams(const gqa_layer& L, int64_t T,
                                        const void* q, void* out) {
  gqa_kv_attend_params ap;
  memset(&ap, 0, sizeof(ap));
  ap.q_len = T;
  ap.q_heads = L.config.num_query_heads;
  ap.q = q;
  ap.q_dtype = GQA_DTYPE_F32;
  ap.out = out;
  ap.out_dtype = GQA_DTYPE_F32;
  ap.sliding_window = L.config.sliding_window;
  // Causal rows always see their own token, so no row is ever fully masked.
  ap.fully_masked_policy = GQA_FULLY_MASKED_UNIFORM;
  return ap;
}

bool PlanCachedRegions(const gqa_layer& L, int64_t B, int64_t T,
                       const WorkspaceNeed& attend, LayerPlan* plan) {
  if (!PlanRegions(L, B, T, T, plan)) return false;
  plan->need.slot = attend.slot;
  return CheckedAdd(plan->need.fixed, attend.fixed, &plan->need.fixed) &&
         WorkspaceBytes(plan->need, 1) >= 0;
}

gqa_status ValidateCachedArgs(const gqa_layer* L,
                              const gqa_forward_args* args) {
  gqa_status s = ValidateForward(L, args);
  if (s != GQA_STATUS_OK) return s;
  const gqa_forward_args& a = *args;
  if (a.value_len != a.query_len) {
    return Fail(
        GQA_STATUS_SHAPE_MISMATCH,
        "with a KV cache, value (and key) carry the same %lld new tokens as "
        "the query (got value_len %lld)",
        static_cast<long long>(a.query_len),
        static_cast<long long>(a.value_len));
  }
  if (a.query_mask || a.value_mask || a.key_mask || a.scores || a.training) {
    return Fail(GQA_STATUS_INVALID_ARGUMENT,
                "a cached forward is causal inference: query/value/key masks, "
                "scores and training are not taken (an attention_mask is "
                "the draft tree)");
  }
  const uint8_t* tree = nullptr;
  int64_t stride = 0;
  return CachedTreeMask(a, &tree, &stride);
}

gqa_status CachedTreeMask(const gqa_forward_args& a, const uint8_t** tree,
                          int64_t* stride_batch) {
  *tree = nullptr;
  *stride_batch = 0;
  if (!a.attention_mask) return GQA_STATUS_OK;
  const int64_t T = a.query_len;
  const int32_t rank = a.attention_mask_rank;
  const int64_t* dims = a.attention_mask_dims;
  const bool square = rank >= 2 && dims[rank - 2] == T && dims[rank - 1] == T;
  const bool batch_ok =
      rank == 2 || (rank == 3 && (dims[0] == 1 || dims[0] == a.batch));
  if (!square || !batch_ok) {
    return Fail(GQA_STATUS_SHAPE_MISMATCH,
                "a cached forward's attention_mask is the draft tree of its "
                "%lld new tokens: (T, T) or (B|1, T, T)",
                static_cast<long long>(T));
  }
  *tree = a.attention_mask;
  *stride_batch = rank == 3 && dims[0] == a.batch ? T * T : 0;
  return GQA_STATUS_OK;
}

namespace {

// Everything a cached forward checks before it writes: the call, the cache
// (once), the append and the ring rule.
gqa_status ValidateCached(const gqa_layer* L, const gqa_forward_args* args,
                          const gqa_kv_cache* cache) {
  gqa_status s = ValidateCachedArgs(L, args);
  if (s != GQA_STATUS_OK) return s;
  const gqa_forward_args& a = *args;
  if ((s = ValidateCache(cache)) != GQA_STATUS_OK) return s;
  if ((s = CheckCacheMatches(*L, *cache)) != GQA_STATUS_OK) return s;
  if (cache->batch != a.batch) {
    return Fail(
        GQA_STATUS_SHAPE_MISMATCH, "cache batch %lld != call batch %lld",
        static_cast<long long>(cache->batch), static_cast<long long>(a.batch));
  }
  // The append must fit before anything is written.
  static const float kProbe[1] = {0.0f};
  if ((s = ValidateAppendTo(*cache, a.query_len, nullptr, kProbe, kProbe,
                            GQA_DTYPE_F32)) != GQA_STATUS_OK) {
    return s;
  }
  if (cache->ring) {
    s = CheckRingWindow(cache->capacity, L->config.sliding_window, a.query_len);
    if (s != GQA_STATUS_OK) return s;
  }
  return CheckAttendHeld(PositionsOf(*cache), a.query_len,
                         EffectiveWindow(L->config.sliding_window),
                         a.query_len);
}

}  // namespace
}  // namespace gqa

using gqa::Fail;

extern "C" {

gqa_status gqa_layer_cached_workspace_size(gqa_layer_t layer,
                                           const gqa_kv_cache* cache,
                                           int64_t new_tokens,
                                           int64_t max_threads,
                                           size_t* size_out) {
  if (!layer) return Fail(GQA_STATUS_NULL_POINTER, "layer is NULL");
  if (!size_out) return Fail(GQA_STATUS_NULL_POINTER, "size_out is NULL");
  if (max_threads <= 0) {
    return Fail(GQA_STATUS_INVALID_SIZE, "max_threads must be > 0, got %lld",
                static_cast<long long>(max_threads));
  }
  gqa_status s = gqa::ValidateCache(cache);
  if (s != GQA_STATUS_OK) return s;
  if ((s = gqa::CheckCacheMatches(*layer, *cache)) != GQA_STATUS_OK) return s;
  // The cached forward projects [B, new_tokens] as query, key and value
  // (this also refuses new_tokens <= 0).
  s = gqa::ValidateShape(*layer, cache->batch, new_tokens, new_tokens);
  if (s != GQA_STATUS_OK) return s;
  const gqa::AttendPlan attend = gqa::PlanAttend(
      *cache, gqa::CachedAttendParams(*layer, new_tokens, nullptr, nullptr));
  gqa::LayerPlan plan;
  if (!gqa::PlanCachedRegions(*layer, cache->batch, new_tokens, attend.need,
                              &plan)) {
    return Fail(GQA_STATUS_SIZE_OVERFLOW, "workspace size overflows");
  }
  return gqa::WorkspaceSizeFor(plan.need, max_threads, size_out);
}

gqa_status gqa_layer_forward_cached(gqa_layer_t L, const gqa_forward_args* args,
                                    gqa_kv_cache* cache, void* workspace,
                                    size_t workspace_size, pthreadpool_t pool) {
  gqa_status s = gqa::ValidateCached(L, args, cache);
  if (s != GQA_STATUS_OK) return s;
  const gqa_forward_args& a = *args;
  const int64_t T = a.query_len;
  gqa::AttendPlan attend =
      gqa::PlanAttend(*cache, gqa::CachedAttendParams(*L, T, nullptr, nullptr));
  gqa::CachedTreeMask(a, &attend.core.tree_mask,
                      &attend.core.tree_stride_batch);
  gqa::LayerPlan plan;
  if (!gqa::PlanCachedRegions(*L, cache->batch, T, attend.need, &plan)) {
    return Fail(GQA_STATUS_SIZE_OVERFLOW, "workspace size overflows");
  }
  int64_t slots = 0;
  if ((s = gqa::FitAndProject(*L, a, plan, workspace, workspace_size, pool,
                              &slots)) != GQA_STATUS_OK) {
    return s;
  }
  unsigned char* ws = static_cast<unsigned char*>(workspace);
  // Append the new tokens' k and v, then attend the cache.
  gqa::AppendRows(cache, T, nullptr, ws + plan.k, ws + plan.v, GQA_DTYPE_F32,
                  L->key.ldc());
  gqa::RunAttend(*cache, attend, ws + plan.q, L->query.ldc(), ws + plan.attn,
                 ws + plan.core, slots, pool);
  return gqa::Finish(*L, a, plan, ws, pool);
}

}  // extern "C"
