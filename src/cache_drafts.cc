// Draft verification on both KV caches (spec 4.4): truncate (forget the
// newest tokens) and keep (an accepted path of drafts moves down to be
// contiguous), validated in full before anything is written.
#include <string.h>

#include "gqa/block_cache.h"
#include "gqa/kv_cache.h"
#include "src/block_cache.h"
#include "src/cache_positions.h"
#include "src/kv_cache.h"
#include "src/operator.h"
#include "src/status.h"

namespace gqa {
namespace {

// The slot of position `pos` of a cache with these rules.
int64_t SlotOf(bool ring, int64_t capacity, int64_t pos) {
  return ring ? pos % capacity : pos;
}

// Moves draft indices[j] to position base + j (j ascending: a source is
// never a destination already written, as indices[j] >= j).
template <class MoveRow>
void MoveKept(int64_t base, const int64_t* indices, int64_t count,
              MoveRow move) {
  for (int64_t j = 0; j < count; ++j) {
    if (indices[j] != j) move(base + indices[j], base + j);
  }
}

// What the caller's arrays must not overlap: the cache's rows (and table).
void StorageOf(const gqa_kv_cache& c, ByteRange out[2]) {
  const int64_t bytes = CacheBytes(c);
  out[0] = RangeOf(c.k, bytes, 1);
  out[1] = RangeOf(c.v, bytes, 1);
}
void StorageOf(const BlockCacheView& v, ByteRange out[2]) {
  const gqa_block_cache& c = *v.cache;
  out[0] = RangeOf(c.blocks, c.num_blocks * v.layout.block_bytes, 1);
  out[1] = RangeOf(c.block_table, c.config.batch * v.layout.table_columns, 4);
}

// truncate on a validated cache: checked in full, then applied.
gqa_status TruncateIn(const CachePositions& pos, const ByteRange storage[2],
                      const int64_t* new_lengths) {
  const gqa_status s = ValidateTruncate(pos, new_lengths, storage, 2);
  if (s != GQA_STATUS_OK) return s;
  ApplyTruncate(pos, new_lengths);
  return GQA_STATUS_OK;
}

// keep on a validated cache: checked in full, then the kept rows moved by
// move(from_position, to_position) and the length set.
template <class MoveRow>
gqa_status KeepIn(const CachePositions& pos, const ByteRange storage[2],
                  int64_t b, int64_t drafts, const int64_t* indices,
                  int64_t count, MoveRow move) {
  const gqa_status s = ValidateKeep(pos, b, drafts, indices, count, storage, 2);
  if (s != GQA_STATUS_OK) return s;
  MoveKept(pos.lengths[b] - drafts, indices, count, move);
  ApplyKeep(pos, b, drafts, count);
  return GQA_STATUS_OK;
}

}  // namespace
}  // namespace gqa

extern "C" {

gqa_status gqa_kv_cache_truncate(gqa_kv_cache* cache,
                                 const int64_t* new_lengths) {
  gqa_status s = gqa::ValidateCache(cache);
  if (s != GQA_STATUS_OK) return s;
  gqa::ByteRange storage[2];
  gqa::StorageOf(*cache, storage);
  return gqa::TruncateIn(gqa::PositionsOf(*cache), storage, new_lengths);
}

gqa_status gqa_kv_cache_keep(gqa_kv_cache* cache, int64_t batch, int64_t drafts,
                             const int64_t* indices, int64_t count) {
  gqa_status s = gqa::ValidateCache(cache);
  if (s != GQA_STATUS_OK) return s;
  gqa::ByteRange storage[2];
  gqa::StorageOf(*cache, storage);
  const gqa::CachePositions pos = gqa::PositionsOf(*cache);
  // Row of a token: [Hkv, D] in the cache's dtype, at slot of batch b.
  const int64_t row =
      cache->kv_heads * cache->head_dim * gqa::DtypeBytes(cache->dtype);
  auto move = [&](int64_t from, int64_t to) {
    // Only called after KeepIn validated batch: in [0, B), no overflow.
    const int64_t first = batch * cache->capacity;
    const int64_t src =
        (first + gqa::SlotOf(pos.ring, cache->capacity, from)) * row;
    const int64_t dst =
        (first + gqa::SlotOf(pos.ring, cache->capacity, to)) * row;
    unsigned char* k = static_cast<unsigned char*>(cache->k);
    unsigned char* v = static_cast<unsigned char*>(cache->v);
    memmove(k + dst, k + src, static_cast<size_t>(row));
    memmove(v + dst, v + src, static_cast<size_t>(row));
  };
  return gqa::KeepIn(pos, storage, batch, drafts, indices, count, move);
}

gqa_status gqa_block_cache_truncate(gqa_block_cache* cache,
                                    const int64_t* new_lengths) {
  gqa::BlockCacheView v;
  gqa_status s = gqa::ValidateBlockCache(cache, &v);
  if (s != GQA_STATUS_OK) return s;
  gqa::ByteRange storage[2];
  gqa::StorageOf(v, storage);
  return gqa::TruncateIn(gqa::PositionsOf(v), storage, new_lengths);
}

gqa_status gqa_block_cache_keep(gqa_block_cache* cache, int64_t batch,
                                int64_t drafts, const int64_t* indices,
                                int64_t count) {
  gqa::BlockCacheView v;
  gqa_status s = gqa::ValidateBlockCache(cache, &v);
  if (s != GQA_STATUS_OK) return s;
  gqa::ByteRange storage[2];
  gqa::StorageOf(v, storage);
  const gqa::CachePositions pos = gqa::PositionsOf(v);
  // A token's rows: Hkv consecutive rows in each of the four regions of
  // its block (codes and scales of k and v), copied as stored.
  const gqa_block_cache_config& cf = cache->config;
  const gqa_block_cache_layout& l = v.layout;
  const int64_t H = cf.kv_heads, bt = cf.block_tokens;
  const struct {
    int64_t offset, row_bytes;
  } regions[4] = {{l.k_codes, l.k_row_bytes},
                  {l.k_scales, l.k_row_scales * 2},
                  {l.v_codes, l.v_row_bytes},
                  {l.v_scales, l.v_row_scales * 2}};
  auto move = [&](int64_t from, int64_t to) {
    const int64_t fs = gqa::SlotOf(v.ring, cf.capacity, from);
    const int64_t ts = gqa::SlotOf(v.ring, cf.capacity, to);
    const unsigned char* src = gqa::BlockOf(v, batch, fs / bt);
    unsigned char* dst = gqa::BlockOf(v, batch, ts / bt);
    for (const auto& r : regions) {
      if (r.row_bytes == 0) continue;
      memmove(dst + r.offset + (ts % bt) * H * r.row_bytes,
              src + r.offset + (fs % bt) * H * r.row_bytes,
              static_cast<size_t>(H * r.row_bytes));
    }
  };
  return gqa::KeepIn(pos, storage, batch, drafts, indices, count, move);
}

}  // extern "C"
