// The operator lifecycle shared by the three front doors (gqa_attention,
// gqa_kv_cache_attend, gqa_layer_forward[_cached]): the rules they all take
// (dtypes, policy, scale, window), the one place a core plan is made, and the
// one workspace check that says how many worker slots fit.
//
// A call goes: validate its public arguments once (the door's own rules plus
// ValidateOptions) -> fill an AttentionParams (src/attention_params.h) ->
// PlanAttention once -> FitWorkspace -> RunAttention(params, plan, ...),
// which never re-plans.
#ifndef GQA_SRC_OPERATOR_H_
#define GQA_SRC_OPERATOR_H_

#include <stddef.h>
#include <stdint.h>

#include "gqa/gqa.h"
#include "gqa/kv_cache.h"
#include "src/attention_core.h"

namespace gqa {

// The options every front door takes, in the public encoding.
struct CoreOptions {
  int32_t q_dtype = GQA_DTYPE_F32;
  int32_t kv_dtype = GQA_DTYPE_F32;
  int32_t out_dtype = GQA_DTYPE_F32;
  int32_t scores_dtype = GQA_DTYPE_F32;
  int32_t fully_masked_policy = GQA_FULLY_MASKED_KERAS;
  float scale = 0.0f;          // 0: 1/sqrt(D)
  int64_t sliding_window = 0;  // 0: none
};
gqa_status ValidateOptions(const CoreOptions& o);

// The logit options of llm-attention-semantics.md 2.2-3 that are scalars or
// per-head vectors: softcap 0 (off) or finite > 0; the `heads` ALiBi slopes
// and sinks (each optional) all finite. Reads slopes and sinks.
gqa_status ValidateLogitOptions(float softcap, const float* alibi_slopes,
                                const float* sinks, int64_t heads);

inline bool ValidDtype(int32_t d) {
  return d == GQA_DTYPE_F32 || d == GQA_DTYPE_F16;
}
inline ElemType ToElem(int32_t d) {
  return d == GQA_DTYPE_F16 ? ElemType::kF16 : ElemType::kF32;
}
inline int64_t DtypeBytes(int32_t d) { return d == GQA_DTYPE_F16 ? 2 : 4; }

// The scale the core multiplies q.k by: the caller's, or 1/sqrt(D) for 0.
float ResolveScale(float scale, int64_t head_dim);

// Whether rows with no allowed key get probabilities 1/S (else 0). Keras
// gives such a row uniform weights unless its probabilities are observed
// (returned scores, or a dropout layer that sees them): then zeros.
bool UniformFullyMasked(int32_t policy, bool probabilities_observed);

// A ring cache of `capacity` slots serves T queries only under a window W
// with W + T - 1 <= capacity (every visible key is still held).
gqa_status CheckRingWindow(int64_t capacity, int64_t window, int64_t q_len);

// The attend arguments both cache doors (gqa_kv_cache_attend and
// gqa_block_cache_attend) take, against a validated cache of these sizes:
// T and Hq, the grouping, the pointers (with need_pointers), the shared
// options, the ring rule and the sizes of q and the probabilities. The
// caller then checks aliasing and, with pointers, CachedQueriesFit.
struct CacheShape {
  int64_t batch = 0, kv_heads = 0, head_dim = 0, capacity = 0;
  int64_t value_dim = 0;          // Dv; 0: head_dim
  int32_t dtype = GQA_DTYPE_F32;  // of k/v for ValidateOptions (f32 or f16)
  bool ring = false;
};
gqa_status ValidateCacheAttendArgs(const CacheShape& c,
                                   const gqa_kv_attend_params* a,
                                   bool need_pointers);
// Every batch holds at least the T tokens whose queries attend.
gqa_status CachedQueriesFit(const int64_t* lengths, int64_t batch,
                            int64_t q_len);

// What a call needs from the caller's workspace: `fixed` bytes (regions of
// the operator, the core's shared partials) then one `slot` per worker.
struct WorkspaceNeed {
  int64_t fixed = 0;
  int64_t slot = 0;
};
// fixed + slot * slots, or -1 when it overflows or a size_t cannot hold it.
int64_t WorkspaceBytes(const WorkspaceNeed& need, int64_t slots);
// The workspace size query of every front door: validates max_threads.
gqa_status WorkspaceSizeFor(const WorkspaceNeed& need, int64_t max_threads,
                            size_t* size_out);
// Checks the caller's workspace (non-null, aligned, room for one worker) and
// says how many workers run: the pool's threads, as many as the slots fit.
gqa_status FitWorkspace(const WorkspaceNeed& need, const void* workspace,
                        size_t workspace_size, pthreadpool_t pool,
                        int64_t* slots);

}  // namespace gqa

#endif  // GQA_SRC_OPERATOR_H_
