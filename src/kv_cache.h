// KV cache internals shared by the cache API and the layer's cached forward:
// validation (the cache once, then each operation's arguments against it),
// the append, and the attend as a plan made once and run from the plan.
#ifndef GQA_SRC_KV_CACHE_H_
#define GQA_SRC_KV_CACHE_H_

#include <stddef.h>
#include <stdint.h>

#include "gqa/kv_cache.h"
#include "src/attention_core.h"
#include "src/cache_positions.h"
#include "src/cache_rope.h"
#include "src/operator.h"

namespace gqa {

// The held positions' view of the cache (src/cache_positions.h).
CachePositions PositionsOf(const gqa_kv_cache& cache);
// Bytes of k (and of v): [B, capacity, Hkv, D] in the cache's dtype.
int64_t CacheBytes(const gqa_kv_cache& cache);

// The cache's own fields: sizes, dtype, pointers, lengths. Every operation
// calls it once; the checks below take the cache as already validated.
gqa_status ValidateCache(const gqa_kv_cache* cache);
// Checks that an append of these tokens fits (nothing is written).
gqa_status ValidateAppendTo(const gqa_kv_cache& cache, int64_t new_tokens,
                            const int64_t* counts, const void* k_new,
                            const void* v_new, int32_t src_dtype);
// Appends validated rows; source rows [B, new_tokens] of Hkv*D elements at
// `src_row_stride` elements apart (0: packed), then advances the lengths.
// With k_rope (validated, on), each key row is normed and rotated at its
// position first.
void AppendRows(gqa_kv_cache* cache, int64_t new_tokens, const int64_t* counts,
                const void* k_new, const void* v_new, int32_t src_dtype,
                int64_t src_row_stride, const CacheRope* k_rope = nullptr);
// An append's positions [B, new_tokens] (or null) must not overlap what it
// writes.
gqa_status RopePositionsApart(const gqa_kv_cache& cache,
                              const int64_t* positions, int64_t new_tokens);
// The attend's arguments against a validated cache; without need_pointers
// (the size query) q, out and q_positions are neither required nor checked.
// Fills *q_rope (params->q_rope validated).
gqa_status ValidateAttendTo(const gqa_kv_cache& cache,
                            const gqa_kv_attend_params* params,
                            bool need_pointers, CacheRope* q_rope);

// A validated attend, planned once: the core's descriptor over the cache
// (q, out and the per-batch offsets are bound by RunAttend) and its plan.
// Workspace: [B] int64 query offsets, rounded to 64 bytes, then (with
// q_rope) the rotated queries [B*T][Hq][D] f32, rounded, then the core's.
struct AttendPlan {
  AttentionParams core;
  AttentionPlan plan;
  int64_t offsets_bytes = 0;
  int64_t q_rows_bytes = 0;
  const CacheRope* q_rope = nullptr;  // the caller's; null: off
  bool q_f16 = false;                 // the caller's q dtype
  WorkspaceNeed need;
};
// q_rope (may be null or off) must outlive the plan's runs.
AttendPlan PlanAttend(const gqa_kv_cache& cache,
                      const gqa_kv_attend_params& params,
                      const CacheRope* q_rope = nullptr);
// Runs a planned attend: q [B, T, Hq, D] rows `q_token_stride` elements
// apart (0: packed), out packed [B, T, Hq, D]; workspace aligned, with room
// for `slots` workers (FitWorkspace).
void RunAttend(const gqa_kv_cache& cache, const AttendPlan& plan, const void* q,
               int64_t q_token_stride, void* out, void* workspace,
               int64_t slots, pthreadpool_t pool);

}  // namespace gqa

#endif  // GQA_SRC_KV_CACHE_H_
