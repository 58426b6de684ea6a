// The cache under test of the draft-verification fuzz family
// (fuzz_drafts.h): a small v1 (gqa_kv_cache) or v2 (gqa_block_cache)
// cache in harness memory, its lengths and held_from, and the harness' own
// view of where a token's rows live (the documented layouts), so that the
// family can predict every byte a truncate, keep or append leaves.
#ifndef GQA_TESTS_FUZZ_FUZZ_DRAFTS_CACHE_H_
#define GQA_TESTS_FUZZ_FUZZ_DRAFTS_CACHE_H_

#include <stdint.h>
#include <string.h>

#include <vector>

#include "gqa/block_cache.h"
#include "gqa/kv_cache.h"
#include "tests/fuzz/fuzz_block_cache.h"
#include "tests/fuzz/fuzz_decode.h"

namespace gqa_fuzz {
namespace drafts {

// Everything a call may write, to compare before and after.
struct Snapshot {
  std::vector<uint8_t> store;
  std::vector<int64_t> ints;
  std::vector<int32_t> table;
  bool operator==(const Snapshot& o) const {
    return store == o.store && ints == o.ints && table == o.table;
  }
};

struct Cache {
  bool v2 = false, ring = false, rotate = false;
  bool bad = false;      // the header rules the cache out: every call fails
  bool overlap = false;  // held_from overlaps lengths: undocumented
  bool shared = false;   // v2 sequences share a block
  int64_t B = 1, cap = 1, Hkv = 1, D = 1, bt = 1, cols = 0;
  int32_t dt = 0;
  gqa_kv_cache kv = {};
  gqa_block_cache bc = {};
  gqa_block_cache_layout lay = {};
  std::vector<uint8_t> raw;  // the rows (v1: k then v; v2: the pool)
  uint8_t* store = nullptr;  // 64-byte aligned in raw
  size_t bytes = 0;
  std::vector<int32_t> table;
  std::vector<int64_t> ints;  // lengths [B] at 0, held_from [B] at B
  int64_t* len = nullptr;
  int64_t* held = nullptr;  // may be NULL or overlap len

  Cache() = default;
  Cache(const Cache&) = delete;  // the structs point into the vectors

  int64_t Slot(int64_t p) const { return ring ? p % cap : p; }
  // The first position sequence b holds (header: held_from, or the last
  // `capacity` of a ring).
  int64_t HeldFrom(int64_t b) const {
    if (!ring) return 0;
    const int64_t lo = len[b] > cap ? len[b] - cap : 0;
    return held && held[b] > lo ? held[b] : lo;
  }
  // Bytes of one row in each region: k codes, k scales, v codes, v scales.
  int64_t RegionBytes(int i) const {
    if (!v2) return i % 2 ? 0 : D * (dt == 1 ? 2 : 4);
    const int64_t r[4] = {lay.k_row_bytes, lay.k_row_scales * 2,
                          lay.v_row_bytes, lay.v_row_scales * 2};
    return r[i];
  }
  // The four regions' row of (slot s of b, head g) in a copy `st` of store.
  void Row(uint8_t* st, int64_t b, int64_t s, int64_t g, uint8_t** p) const {
    if (!v2) {
      const int64_t off = ((b * cap + s) * Hkv + g) * RegionBytes(0);
      p[0] = p[1] = st + off;
      p[2] = p[3] = st + bytes / 2 + off;
      return;
    }
    uint8_t* blk = st + (int64_t)table[b * cols + s / bt] * lay.block_bytes;
    const int64_t rr = (s % bt) * Hkv + g;
    p[0] = blk + lay.k_codes + rr * lay.k_row_bytes;
    p[1] = blk + lay.k_scales + rr * lay.k_row_scales * 2;
    p[2] = blk + lay.v_codes + rr * lay.v_row_bytes;
    p[3] = blk + lay.v_scales + rr * lay.v_row_scales * 2;
  }
  void Decode(uint8_t* st, int64_t b, int64_t s, int64_t g, float* k,
              float* v) const {
    uint8_t* p[4];
    Row(st, b, s, g, p);
    bc::DecodeRow(dt, p[0], p[1], D, k);
    bc::DecodeRow(dt, p[2], p[3], D, v);
  }
  void Encode(uint8_t* st, int64_t b, int64_t s, int64_t g, const float* k,
              const float* v) const {
    uint8_t* p[4];
    Row(st, b, s, g, p);
    bc::EncodeRow(dt, rotate, k, GQA_DTYPE_F32, D, p[0], p[1]);
    bc::EncodeRow(dt, rotate, v, GQA_DTYPE_F32, D, p[2], p[3]);
  }
  // The documented keep: the token's rows copied as stored.
  void MoveToken(uint8_t* st, int64_t b, int64_t from, int64_t to) const {
    for (int64_t g = 0; g < Hkv; ++g) {
      uint8_t *src[4], *dst[4];
      Row(st, b, from, g, src);
      Row(st, b, to, g, dst);
      for (int i = 0; i < 4; ++i)
        if (RegionBytes(i) > 0) memmove(dst[i], src[i], RegionBytes(i));
    }
  }
  Snapshot Take() const {
    return {std::vector<uint8_t>(store, store + bytes), ints, table};
  }

  gqa_status Truncate(const int64_t* nl) {
    return v2 ? gqa_block_cache_truncate(&bc, nl)
              : gqa_kv_cache_truncate(&kv, nl);
  }
  gqa_status Keep(int64_t b, int64_t drafts, const int64_t* idx, int64_t n) {
    return v2 ? gqa_block_cache_keep(&bc, b, drafts, idx, n)
              : gqa_kv_cache_keep(&kv, b, drafts, idx, n);
  }
  gqa_status Append(int64_t n, const float* k, const float* v) {
    return v2 ? gqa_block_cache_append(&bc, n, nullptr, k, v, GQA_DTYPE_F32)
              : gqa_kv_cache_append(&kv, n, nullptr, k, v, GQA_DTYPE_F32);
  }
  gqa_status AppendRope(int64_t n, const float* k, const float* v,
                        const gqa_rope_params* rope, const int64_t* pos) {
    return v2 ? gqa_block_cache_append_rope(&bc, n, nullptr, k, v,
                                            GQA_DTYPE_F32, rope, pos)
              : gqa_kv_cache_append_rope(&kv, n, nullptr, k, v, GQA_DTYPE_F32,
                                         rope, pos);
  }
  gqa_status WorkspaceSize(const gqa_kv_attend_params* a, int64_t threads,
                           size_t* size) {
    return v2 ? gqa_block_cache_attend_workspace_size(&bc, a, threads, size)
              : gqa_kv_cache_attend_workspace_size(&kv, a, threads, size);
  }
  gqa_status Attend(const gqa_kv_attend_params* a, void* ws, size_t size,
                    pthreadpool_t pool) {
    return v2 ? gqa_block_cache_attend(&bc, a, ws, size, pool)
              : gqa_kv_cache_attend(&kv, a, ws, size, pool);
  }
};

// Draws a valid configuration (v2: its layout), random stored rows,
// lengths and held_from (NULL, natural, raised, empty, or out of the
// header's [max(0, len - C), len]). False: nothing to fuzz.
inline bool BuildCache(Reader& r, Rng& rng, Cache* c) {
  static const int64_t kDims[] = {1, 2, 3, 4, 8, 16, 32, 64};
  c->v2 = r.Bit();
  c->B = r.Dim(1, 2), c->Hkv = r.Dim(1, 2), c->D = kDims[r.U8() % 8];
  c->cap = r.Dim(1, 10), c->bt = r.Dim(1, 4);
  c->ring = r.Bit();
  if (c->B < 1 || c->B > 2 || c->Hkv < 1 || c->Hkv > 2 || c->cap < 1 ||
      c->cap > 10 || c->bt < 1 || c->bt > 4)
    return false;  // hostile sizes: the other families'
  const int64_t B = c->B, cap = c->cap, Hkv = c->Hkv;
  if (c->v2) {
    c->dt = r.U8() % 4;
    c->rotate = r.Bit();
    if (c->dt == GQA_DTYPE_Q4 && c->D < 32) c->D = 32;
    if (c->rotate && (c->D & (c->D - 1))) c->D = 4;
    gqa_block_cache_config cf = {};
    cf.batch = B, cf.kv_heads = Hkv, cf.head_dim = c->D, cf.capacity = cap;
    cf.block_tokens = c->bt, cf.dtype = c->dt;
    cf.flags = (c->ring ? GQA_BLOCK_CACHE_RING : 0u) |
               (c->rotate ? GQA_BLOCK_CACHE_ROTATE : 0u);
    if (gqa_block_cache_layout_of(&cf, &c->lay) != GQA_STATUS_OK)
      Finding("gqa_block_cache_layout_of rejected a valid config");
    c->cols = c->lay.table_columns;
    const int64_t blocks = B * c->cols;
    c->bytes = (size_t)(blocks * c->lay.block_bytes);
    c->table.resize((size_t)blocks);
    const int tmode = r.U8() % 3;  // in order, reversed, a shared prefix
    for (int64_t i = 0; i < blocks; ++i)
      c->table[i] = (int32_t)(tmode == 1 ? blocks - 1 - i : i);
    if (tmode == 2 && B == 2) c->table[c->cols] = c->table[0];
    c->shared = tmode == 2 && B == 2;
    c->bc.config = cf, c->bc.num_blocks = blocks;
  } else {
    c->dt = r.U8() % 2;
    c->bytes = (size_t)(2 * B * cap * Hkv * c->RegionBytes(0));
  }
  c->raw.assign(c->bytes + 128, 0);
  c->store = (uint8_t*)(((uintptr_t)c->raw.data() + 63) & ~uintptr_t{63});
  for (size_t i = 0; i < c->bytes; i += 8) {  // padding: random bytes
    const uint64_t x = rng.Next();
    memcpy(c->store + i, &x, c->bytes - i < 8 ? c->bytes - i : 8);
  }
  c->ints.assign((size_t)(4 * B + 8), 0);
  c->len = c->ints.data();
  for (int64_t b = 0; b < B; ++b) {
    const int64_t x = c->len[b] = r.Dim(0, c->ring ? 3 * cap : cap);
    c->bad |= x < 0 || (!c->ring && x > cap) || x > bc::kMaxPos;
  }
  if (r.hostile && r.U8() >= 240) {
    c->len[0] = c->ring ? -1 : cap + 1;
    c->bad = true;
  }
  // Every slot holds an encoded random row (the history).
  const int64_t slots = c->v2 ? c->cols * c->bt : cap;
  float k[bc::kMaxRow], v[bc::kMaxRow];
  for (int64_t b = 0; b < B; ++b)
    for (int64_t s = 0; s < slots && s < cap; ++s)
      for (int64_t g = 0; g < Hkv; ++g) {
        for (int64_t i = 0; i < c->D; ++i)
          k[i] = (float)rng.Uniform(), v[i] = (float)rng.Uniform();
        c->Encode(c->store, b, s, g, k, v);
      }
  const uint8_t hm = r.U8();
  if (hm % 8 >= 2) c->held = c->ints.data() + B;
  for (int64_t b = 0; c->held && !c->bad && b < B; ++b) {
    const int64_t lb = c->len[b], lo = lb > cap ? lb - cap : 0;
    switch (hm % 8) {
      case 2:
      case 3:
        c->held[b] = lo;
        break;
      case 4:
      case 5:
        c->held[b] = lo + r.U8() % (lb - lo + 1);
        break;
      case 6:
        c->held[b] = lb;  // holds nothing
        break;
      default:  // outside the header's range: a ring refuses the cache
        c->held[b] = lo > 0 && r.Bit() ? lo - 1 : lb + 1 + r.U8() % 3;
        c->bad |= c->ring;
    }
  }
  if (r.hostile && r.U8() >= 240 && c->held) {
    c->held = c->len;  // held_from overlaps lengths
    c->overlap = c->ring;
  } else if (r.hostile && r.U8() >= 232 && c->held && c->ring) {
    // held_from inside the rows (v1: k or v) or the block table: refused.
    const bool tab = c->v2 && r.Bit() && c->table.size() >= (size_t)(2 * B);
    c->held = tab ? (int64_t*)c->table.data()
                  : (int64_t*)(c->store + (r.Bit() ? c->bytes / 2 : 0));
    c->bad = true;
  }
  if (c->v2) {
    c->bc.blocks = c->store, c->bc.block_table = c->table.data();
    c->bc.lengths = c->len, c->bc.held_from = c->held;
  } else {
    c->kv.batch = B, c->kv.capacity = cap, c->kv.kv_heads = Hkv;
    c->kv.head_dim = c->D, c->kv.dtype = c->dt, c->kv.ring = c->ring;
    c->kv.k = c->store, c->kv.v = c->store + c->bytes / 2;
    c->kv.lengths = c->len, c->kv.held_from = c->held;
  }
  return true;
}

}  // namespace drafts
}  // namespace gqa_fuzz

#endif  // GQA_TESTS_FUZZ_FUZZ_DRAFTS_CACHE_H_
