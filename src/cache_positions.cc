// The held positions of a KV cache sequence and the truncate / keep rules
// (src/cache_positions.h; spec 4.4).
#include "src/cache_positions.h"

#include "src/status.h"

namespace gqa {
namespace {

bool OverlapsAny(const ByteRange& r, const CachePositions& c,
                 const ByteRange* storage, int parts) {
  if (Overlap(r, RangeOf(c.lengths, c.batch, 8)) ||
      Overlap(r, RangeOf(c.held_from, c.batch, 8))) {
    return true;
  }
  for (int i = 0; i < parts; ++i) {
    if (Overlap(r, storage[i])) return true;
  }
  return false;
}

gqa_status NeedHeldFrom(const CachePositions& c, const char* op) {
  if (c.ring && !c.held_from) {
    return Fail(GQA_STATUS_INVALID_ARGUMENT,
                "a ring cache needs `held_from` [B] to %s (it records which "
                "positions the ring still holds)",
                op);
  }
  return GQA_STATUS_OK;
}

}  // namespace

int64_t HeldFrom(const CachePositions& c, int64_t b) {
  if (!c.ring) return 0;
  if (c.held_from) return c.held_from[b];
  const int64_t len = c.lengths[b];
  return len > c.capacity ? len - c.capacity : 0;
}

gqa_status ValidateHeldFrom(const CachePositions& c) {
  if (!c.ring || !c.held_from) return GQA_STATUS_OK;
  if (Overlap(RangeOf(c.lengths, c.batch, 8),
              RangeOf(c.held_from, c.batch, 8))) {
    return Fail(GQA_STATUS_INVALID_ARGUMENT,
                "the cache's held_from overlaps its lengths");
  }
  for (int64_t b = 0; b < c.batch; ++b) {
    const int64_t len = c.lengths[b], from = c.held_from[b];
    const int64_t lo = len > c.capacity ? len - c.capacity : 0;
    if (from < lo || from > len) {
      return Fail(GQA_STATUS_INVALID_ARGUMENT,
                  "cache held_from[%lld] = %lld is outside [%lld, %lld] "
                  "(a ring holds at most its capacity %lld)",
                  static_cast<long long>(b), static_cast<long long>(from),
                  static_cast<long long>(lo), static_cast<long long>(len),
                  static_cast<long long>(c.capacity));
    }
  }
  return GQA_STATUS_OK;
}

void RaiseHeldFrom(const CachePositions& c) {
  if (!c.ring || !c.held_from) return;
  for (int64_t b = 0; b < c.batch; ++b) {
    const int64_t lo = c.lengths[b] - c.capacity;
    if (c.held_from[b] < lo) c.held_from[b] = lo;
  }
}

gqa_status CheckAttendHeld(const CachePositions& c, int64_t q_len,
                           int64_t window, int64_t appended) {
  for (int64_t b = 0; b < c.batch; ++b) {
    const int64_t len = c.lengths[b] + appended;
    int64_t from = HeldFrom(c, b);
    if (c.ring && from < len - c.capacity) from = len - c.capacity;
    if (from == 0) continue;
    // Query 0 at len - T sees back to len - T - W + 1 (no window: 0).
    int64_t need = window > 0 ? len - q_len - window + 1 : 0;
    if (need < 0) need = 0;
    if (need < from) {
      return Fail(GQA_STATUS_INVALID_ARGUMENT,
                  "batch %lld: attend needs positions [%lld, %lld] that the "
                  "cache no longer holds (held from %lld)",
                  static_cast<long long>(b), static_cast<long long>(need),
                  static_cast<long long>(from - 1),
                  static_cast<long long>(from));
    }
  }
  return GQA_STATUS_OK;
}

gqa_status ValidateTruncate(const CachePositions& c, const int64_t* new_lengths,
                            const ByteRange* storage, int parts) {
  if (!new_lengths) return Fail(GQA_STATUS_NULL_POINTER, "lengths is NULL");
  gqa_status s = NeedHeldFrom(c, "truncate");
  if (s != GQA_STATUS_OK) return s;
  if (OverlapsAny(RangeOf(new_lengths, c.batch, 8), c, storage, parts)) {
    return Fail(GQA_STATUS_INVALID_ARGUMENT,
                "the new lengths overlap the cache's storage, lengths or "
                "held_from");
  }
  for (int64_t b = 0; b < c.batch; ++b) {
    if (new_lengths[b] < 0 || new_lengths[b] > c.lengths[b]) {
      return Fail(GQA_STATUS_INVALID_ARGUMENT,
                  "truncate: new length %lld of batch %lld must lie in [0, "
                  "%lld] (its length)",
                  static_cast<long long>(new_lengths[b]),
                  static_cast<long long>(b),
                  static_cast<long long>(c.lengths[b]));
    }
  }
  return GQA_STATUS_OK;
}

void ApplyTruncate(const CachePositions& c, const int64_t* new_lengths) {
  for (int64_t b = 0; b < c.batch; ++b) {
    // A ring truncated below what it still holds holds nothing: the
    // positions from the new length on are written afresh.
    if (c.ring && c.held_from[b] > new_lengths[b])
      c.held_from[b] = new_lengths[b];
    c.lengths[b] = new_lengths[b];
  }
}

gqa_status ValidateKeep(const CachePositions& c, int64_t b, int64_t drafts,
                        const int64_t* indices, int64_t count,
                        const ByteRange* storage, int parts) {
  gqa_status s = NeedHeldFrom(c, "keep drafts");
  if (s != GQA_STATUS_OK) return s;
  if (b < 0 || b >= c.batch) {
    return Fail(GQA_STATUS_INVALID_ARGUMENT,
                "keep: batch %lld is outside [0, %lld)",
                static_cast<long long>(b), static_cast<long long>(c.batch));
  }
  const int64_t len = c.lengths[b];
  if (drafts < 0 || drafts > len) {
    return Fail(GQA_STATUS_INVALID_ARGUMENT,
                "keep: %lld drafts must lie in [0, %lld] (batch %lld's "
                "length)",
                static_cast<long long>(drafts), static_cast<long long>(len),
                static_cast<long long>(b));
  }
  if (count < 0 || count > drafts) {
    return Fail(GQA_STATUS_INVALID_ARGUMENT,
                "keep: %lld indices must lie in [0, %lld] (the drafts)",
                static_cast<long long>(count), static_cast<long long>(drafts));
  }
  if (count > 0 && !indices)
    return Fail(GQA_STATUS_NULL_POINTER, "keep: indices is NULL");
  if (OverlapsAny(RangeOf(indices, count, 8), c, storage, parts)) {
    return Fail(GQA_STATUS_INVALID_ARGUMENT,
                "keep: indices overlap the cache's storage, lengths or "
                "held_from");
  }
  for (int64_t j = 0; j < count; ++j) {
    const int64_t lo = j > 0 ? indices[j - 1] + 1 : 0;
    if (indices[j] < lo || indices[j] >= drafts) {
      return Fail(GQA_STATUS_INVALID_ARGUMENT,
                  "keep: indices must be strictly ascending in [0, %lld): "
                  "indices[%lld] = %lld",
                  static_cast<long long>(drafts), static_cast<long long>(j),
                  static_cast<long long>(indices[j]));
    }
  }
  if (len - drafts < HeldFrom(c, b)) {
    return Fail(GQA_STATUS_INVALID_ARGUMENT,
                "keep: the newest %lld tokens of batch %lld are not all held "
                "(held from %lld, length %lld)",
                static_cast<long long>(drafts), static_cast<long long>(b),
                static_cast<long long>(HeldFrom(c, b)),
                static_cast<long long>(len));
  }
  return GQA_STATUS_OK;
}

void ApplyKeep(const CachePositions& c, int64_t b, int64_t drafts,
               int64_t count) {
  c.lengths[b] = c.lengths[b] - drafts + count;
}

}  // namespace gqa
