// Which positions a KV cache sequence still holds, and the rules of draft
// verification on them (spec 4.4: truncate, keep), shared by the v1 cache
// (gqa/kv_cache.h) and the v2 block cache (gqa/block_cache.h).
//
// A sequence b holds the positions [HeldFrom(b), lengths[b]). Linear
// caches hold [0, len). A ring of C slots holds the last C written, or,
// once it truncated or kept, fewer: [held_from[b], len), with held_from
// kept by every call that changes the lengths (append: raised to len - C;
// truncate: lowered to the new length where that is below it).
#ifndef GQA_SRC_CACHE_POSITIONS_H_
#define GQA_SRC_CACHE_POSITIONS_H_

#include <stdint.h>

#include "gqa/gqa.h"
#include "src/status.h"

namespace gqa {

struct CachePositions {
  int64_t batch = 0, capacity = 0;
  bool ring = false;
  int64_t* lengths = nullptr;    // [B]
  int64_t* held_from = nullptr;  // [B] or null (rings only read it)
};

// The first position sequence b holds.
int64_t HeldFrom(const CachePositions& c, int64_t b);

// A ring's held_from [B] (where given): each in [max(0, len - C), len], not
// overlapping lengths. Linear caches ignore the field.
gqa_status ValidateHeldFrom(const CachePositions& c);

// After an append advanced the lengths: a ring's held_from rises to
// len - C where the ring overwrote older positions.
void RaiseHeldFrom(const CachePositions& c);

// An attend of the newest T queries under window W (0: none) reads only
// held positions (query t of batch b sees positions > len - T + t - W);
// `appended`: as after an append of that many tokens to every batch.
gqa_status CheckAttendHeld(const CachePositions& c, int64_t q_len,
                           int64_t window, int64_t appended = 0);

// truncate: 0 <= new_lengths[b] <= lengths[b]; a ring needs held_from;
// new_lengths must not overlap `storage` [parts] (the cache's rows, table) or
// the lengths / held_from arrays. Nothing is written.
gqa_status ValidateTruncate(const CachePositions& c, const int64_t* new_lengths,
                            const ByteRange* storage, int parts);
void ApplyTruncate(const CachePositions& c, const int64_t* new_lengths);

// keep: batch b, the newest `drafts` tokens (all held), `count` indices
// strictly ascending in [0, drafts) (NULL when count is 0), not
// overlapping the cache's storage or arrays. Nothing is written.
gqa_status ValidateKeep(const CachePositions& c, int64_t b, int64_t drafts,
                        const int64_t* indices, int64_t count,
                        const ByteRange* storage, int parts);
// After the rows moved: lengths[b] = len - drafts + count.
void ApplyKeep(const CachePositions& c, int64_t b, int64_t drafts,
               int64_t count);

}  // namespace gqa

#endif  // GQA_SRC_CACHE_POSITIONS_H_
