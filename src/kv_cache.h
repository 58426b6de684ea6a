// KV cache internals shared by the cache API and the layer's cached forward.
#ifndef GQA_SRC_KV_CACHE_H_
#define GQA_SRC_KV_CACHE_H_

#include <stddef.h>
#include <stdint.h>

#include "gqa/kv_cache.h"

namespace gqa {

gqa_status ValidateCache(const gqa_kv_cache* cache);
// Checks that an append of these tokens fits (nothing is written).
gqa_status ValidateAppend(const gqa_kv_cache* cache, int64_t new_tokens,
                          const int64_t* counts, const void* k_new,
                          const void* v_new, int32_t src_dtype);
// Appends validated rows; source rows [B, new_tokens] of Hkv*D elements at
// `src_row_stride` elements apart (0: packed), then advances the lengths.
void AppendRows(gqa_kv_cache* cache, int64_t new_tokens, const int64_t* counts,
                const void* k_new, const void* v_new, int32_t src_dtype,
                int64_t src_row_stride);
gqa_status ValidateAttend(const gqa_kv_cache* cache,
                          const gqa_kv_attend_params* params,
                          bool need_pointers);
// Workspace of an attend call with `slots` workers (-1 when it overflows or
// exceeds what a size_t holds), and of one worker.
int64_t AttendWorkspaceBytes(const gqa_kv_cache& cache,
                             const gqa_kv_attend_params& params, int64_t slots);
int64_t AttendSlotBytes(const gqa_kv_cache& cache,
                        const gqa_kv_attend_params& params);
// Runs a validated attend; q rows `q_token_stride` elements apart (0: packed
// [B,T,Hq,D]); workspace aligned, at least AttendWorkspaceBytes(.., slots).
void RunAttendValidated(const gqa_kv_cache& cache,
                        const gqa_kv_attend_params& params,
                        int64_t q_token_stride, void* workspace, int64_t slots,
                        pthreadpool_t pool);

}  // namespace gqa

#endif  // GQA_SRC_KV_CACHE_H_
