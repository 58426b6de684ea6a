// RoPE as an option of the KV caches (include/gqa/kv_cache.h,
// block_cache.h): keys rotated on their way into the cache (append), queries
// rotated into the attend's workspace on their way to the core, both from
// one validated plan (src/rope.h), so that a decode step is
// append-with-rope + attend with no extra pass over memory.
#ifndef GQA_SRC_CACHE_ROPE_H_
#define GQA_SRC_CACHE_ROPE_H_

#include <stdint.h>

#include "gqa/gqa.h"
#include "gqa/rope.h"
#include "src/rope.h"

namespace gqa {

// A validated RoPE option of one call: off (no params), or a plan and the
// caller's positions (null: the rows' cache positions).
struct CacheRope {
  bool on = false;
  const int64_t* positions = nullptr;  // [B, T] or null
  RopePlan plan;
};

// Checks a call's rope params (may be null: off) for rows of head_dim, and
// its positions [B, T] (null: the cache positions): every entry read must
// be in [0, 2^24); positions without params are an error. counts [B] (or
// null: T each) says which entries are read: those t < counts[b]. With
// read_positions false (a workspace size query) positions are not read.
// `what` names the option in messages ("k_rope", "q_rope"). Fills *out.
gqa_status ValidateCacheRope(const gqa_rope_params* params,
                             const int64_t* positions, int64_t batch,
                             int64_t tokens, const int64_t* counts,
                             int64_t head_dim, bool read_positions,
                             const char* what, CacheRope* out);

// The position of row t of batch b: positions[b * T + t], or first + t.
inline int64_t RopePositionOf(const CacheRope& r, int64_t b, int64_t T,
                              int64_t t, int64_t first) {
  return r.positions ? r.positions[b * T + t] : first + t;
}

// Queries q [B, T, Hq, D] (f32 or f16, token rows `q_token_stride`
// elements apart) into dst [B*T][Hq][D] f32, each row normed and rotated
// at its position; query t of batch b defaults to lengths[b] - T + t.
void StageRopeQueries(const CacheRope& r, const int64_t* lengths, int64_t batch,
                      int64_t T, int64_t q_heads, const void* q, bool q_f16,
                      int64_t q_token_stride, float* dst);

}  // namespace gqa

#endif  // GQA_SRC_CACHE_ROPE_H_
