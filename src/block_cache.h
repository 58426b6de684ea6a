// KV cache v2 internals (include/gqa/block_cache.h): the layout of a
// configuration, validation (the cache once per call, then each operation's
// arguments against it), the append, the read-back and the attend as a plan
// made once and run from the plan.
#ifndef GQA_SRC_BLOCK_CACHE_H_
#define GQA_SRC_BLOCK_CACHE_H_

#include <pthreadpool.h>
#include <stddef.h>
#include <stdint.h>

#include "gqa/block_cache.h"
#include "src/attention_core.h"
#include "src/cache_positions.h"
#include "src/cache_rope.h"
#include "src/operator.h"

namespace gqa {

// Rows longer than this are refused (an append rotates / quantizes one row
// at a time in a stack buffer of this many floats).
constexpr int64_t kMaxCacheRow = 4096;
constexpr int64_t kMaxBlockTokens = 4096;

// A validated cache and its layout (what every operation starts from).
struct BlockCacheView {
  const gqa_block_cache* cache = nullptr;
  gqa_block_cache_layout layout{};
  int64_t value_dim = 0;  // Dv resolved (0 -> D)
  bool ring = false, rotate = false;
};

// The held positions' view of the cache (src/cache_positions.h).
CachePositions PositionsOf(const BlockCacheView& v);

// The configuration's rules and its layout.
gqa_status LayoutOf(const gqa_block_cache_config& config,
                    gqa_block_cache_layout* layout);
// The cache's own fields: configuration, pointers, pool size, lengths and
// every table entry (-1 or a pool index; a block wherever a held token
// lives). Fires the "validate_cache" debug hook.
gqa_status ValidateBlockCache(const gqa_block_cache* cache,
                              BlockCacheView* view);

// The block of table column `col` of batch b (a validated, held column).
unsigned char* BlockOf(const BlockCacheView& v, int64_t b, int64_t col);

// The appended rows must fit (positions, blocks, no overlap); nothing is
// written.
gqa_status ValidateBlockAppend(const BlockCacheView& v, int64_t new_tokens,
                               const int64_t* counts, const void* k_new,
                               const void* v_new, int32_t src_dtype);
// An append's positions [B, new_tokens] (or null) must not overlap what it
// writes.
gqa_status BlockRopePositionsApart(const BlockCacheView& v,
                                   const int64_t* positions,
                                   int64_t new_tokens);
// Writes validated rows [B, new_tokens, Hkv, D|Dv] (k rows `k_row_stride`
// elements apart, v rows `v_row_stride`; 0: packed) and advances lengths;
// with k_rope (validated, on) each key row is normed and rotated at its
// position first.
void AppendBlockRows(const BlockCacheView& v, gqa_block_cache* cache,
                     int64_t new_tokens, const int64_t* counts,
                     const void* k_new, const void* v_new, int32_t src_dtype,
                     int64_t k_row_stride, int64_t v_row_stride,
                     const CacheRope* k_rope = nullptr);

// Fills *q_rope (params->q_rope validated).
gqa_status ValidateBlockAttend(const BlockCacheView& v,
                               const gqa_kv_attend_params* params,
                               bool need_pointers, CacheRope* q_rope);

// A validated attend, planned once. Workspace: [B] int64 query offsets,
// then the staged queries [B*T*Hq][D] f32 (rotating caches, or q_rope:
// RoPE then Hadamard), then (rotating caches) the outputs [B*T*Hq][Dv] f32,
// each rounded to 64 bytes, then the core's.
struct BlockAttendPlan {
  AttentionParams core;  // q, out and offsets bound by RunBlockAttend
  AttentionPlan plan;
  int64_t offsets_bytes = 0;
  int64_t q_rows_bytes = 0;             // staged queries (0: none)
  int64_t out_rows_bytes = 0;           // rotated outputs (0: none)
  const CacheRope* q_rope = nullptr;    // the caller's; null: off
  bool q_f16 = false, out_f16 = false;  // the caller's q and out dtypes
  WorkspaceNeed need;
};
// q_rope (may be null or off) must outlive the plan's runs.
BlockAttendPlan PlanBlockAttend(const BlockCacheView& v,
                                const gqa_kv_attend_params& params,
                                const CacheRope* q_rope = nullptr);
// q [B, T, Hq, D] rows `q_token_stride` elements apart (0: packed), out
// packed [B, T, Hq, D] in out_dtype.
void RunBlockAttend(const BlockCacheView& v, const BlockAttendPlan& plan,
                    const void* q, int64_t q_token_stride, void* out,
                    void* workspace, int64_t slots, pthreadpool_t pool);

}  // namespace gqa

#endif  // GQA_SRC_BLOCK_CACHE_H_
