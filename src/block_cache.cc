// KV cache v2: the layout of a configuration, validation of a cache and of
// its appends, the append (rotation, conversion, quantization into blocks)
// into blocks. The reading side (attend, read-back): block_cache_attend.cc.
#include "src/block_cache.h"

#include <string.h>

#include "gqa/block_cache.h"
#include "src/debug_hook.h"
#include "src/elementwise.h"
#include "src/quantize.h"
#include "src/status.h"

namespace gqa {
namespace {

constexpr int64_t kQ4Group = 32;

bool IsPow2(int64_t n) { return n > 0 && (n & (n - 1)) == 0; }

bool CacheDtype(int32_t d) {
  return d == GQA_DTYPE_F32 || d == GQA_DTYPE_F16 || d == GQA_DTYPE_Q8 ||
         d == GQA_DTYPE_Q4;
}

// Codes bytes and f16 scales of one stored row of n elements.
void RowShape(int32_t dtype, int64_t n, int64_t* bytes, int64_t* scales) {
  switch (dtype) {
    case GQA_DTYPE_F32:
      *bytes = 4 * n, *scales = 0;
      break;
    case GQA_DTYPE_F16:
      *bytes = 2 * n, *scales = 0;
      break;
    case GQA_DTYPE_Q8:
      *bytes = n, *scales = 1;
      break;
    default:
      *bytes = n / 2, *scales = n / kQ4Group;
      break;
  }
}

int64_t Align64(int64_t x) { return (x + 63) / 64 * 64; }

// Slots a sequence of `len` tokens holds.
int64_t HeldSlots(const BlockCacheView& v, int64_t len) {
  const int64_t c = v.cache->config.capacity;
  return len < c ? len : c;
}

// One source row [n] (f32 or f16) stored as a cache row: normed and
// rotated by RoPE (a key row with `rope`: the plan and the token's
// angles), Hadamard-rotated, then converted or quantized into codes /
// scales.
struct RowRope {
  const RopePlan* plan = nullptr;  // null: no RoPE
  const RopeAngles* angles = nullptr;
};
void StoreRow(const BlockCacheView& v, const void* src, int32_t src_dtype,
              int64_t n, unsigned char* codes, unsigned char* scales,
              const RowRope& rope = RowRope()) {
  const int32_t dtype = v.cache->config.dtype;
  float row[kMaxCacheRow];
  const float* x = static_cast<const float*>(src);
  if (src_dtype == GQA_DTYPE_F16) {
    if (dtype == GQA_DTYPE_F16 && !v.rotate && !rope.plan) {
      memcpy(codes, src, static_cast<size_t>(n) * 2);
      return;
    }
    ConvertF16ToF32(static_cast<const uint16_t*>(src), row,
                    static_cast<size_t>(n));
    x = row;
  }
  if (rope.plan) {
    if (x != row) memcpy(row, x, static_cast<size_t>(n) * 4);
    RopeRowF32(*rope.plan, *rope.angles, row);
    x = row;
  }
  if (v.rotate) {
    if (x != row) memcpy(row, x, static_cast<size_t>(n) * 4);
    RotateRowF32(row, n);
    x = row;
  }
  uint16_t* s = reinterpret_cast<uint16_t*>(scales);
  switch (dtype) {
    case GQA_DTYPE_F32:
      memcpy(codes, x, static_cast<size_t>(n) * 4);
      break;
    case GQA_DTYPE_F16:
      ConvertF32ToF16(x, reinterpret_cast<uint16_t*>(codes),
                      static_cast<size_t>(n));
      break;
    case GQA_DTYPE_Q8:
      QuantizeRowQ8(x, n, reinterpret_cast<int8_t*>(codes), s);
      break;
    default:
      QuantizeRowQ4(x, n, codes, s);
      break;
  }
}

}  // namespace

CachePositions PositionsOf(const BlockCacheView& v) {
  CachePositions p;
  p.batch = v.cache->config.batch;
  p.capacity = v.cache->config.capacity;
  p.ring = v.ring;
  p.lengths = v.cache->lengths;
  p.held_from = v.cache->held_from;
  return p;
}

unsigned char* BlockOf(const BlockCacheView& v, int64_t b, int64_t col) {
  const gqa_block_cache& c = *v.cache;
  const int64_t index = c.block_table[b * v.layout.table_columns + col];
  return static_cast<unsigned char*>(c.blocks) + index * v.layout.block_bytes;
}

gqa_status LayoutOf(const gqa_block_cache_config& c,
                    gqa_block_cache_layout* out) {
  const struct {
    const char* name;
    int64_t value;
  } sizes[] = {{"batch", c.batch},
               {"kv_heads", c.kv_heads},
               {"head_dim", c.head_dim},
               {"capacity", c.capacity},
               {"block_tokens", c.block_tokens}};
  for (const auto& s : sizes) {
    if (s.value <= 0) {
      return Fail(GQA_STATUS_INVALID_SIZE, "cache `%s` must be > 0, got %lld",
                  s.name, static_cast<long long>(s.value));
    }
  }
  if (c.value_dim < 0) {
    return Fail(GQA_STATUS_INVALID_SIZE, "cache value_dim must be >= 0");
  }
  const int64_t D = c.head_dim, Dv = c.value_dim ? c.value_dim : D;
  if (!CacheDtype(c.dtype)) {
    return Fail(GQA_STATUS_INVALID_ENUM,
                "cache dtype %d is not f32, f16, q8 or q4", c.dtype);
  }
  if ((c.flags & ~(GQA_BLOCK_CACHE_RING | GQA_BLOCK_CACHE_ROTATE |
                   GQA_BLOCK_CACHE_INT8_QK)) != 0) {
    return Fail(GQA_STATUS_INVALID_ARGUMENT, "unknown cache flags 0x%x",
                c.flags);
  }
  if (D > kMaxCacheRow || Dv > kMaxCacheRow ||
      c.block_tokens > kMaxBlockTokens || c.capacity > kMaxPosition) {
    return Fail(GQA_STATUS_SIZE_OVERFLOW,
                "cache sizes too large (head_dim, value_dim <= 4096, "
                "block_tokens <= 4096, capacity <= 2^24)");
  }
  if (c.dtype == GQA_DTYPE_Q4 && (D % kQ4Group != 0 || Dv % kQ4Group != 0)) {
    return Fail(GQA_STATUS_INVALID_SIZE,
                "a q4 cache needs head_dim and value_dim multiples of 32 "
                "(got %lld, %lld)",
                static_cast<long long>(D), static_cast<long long>(Dv));
  }
  if ((c.flags & GQA_BLOCK_CACHE_ROTATE) && (!IsPow2(D) || !IsPow2(Dv))) {
    return Fail(GQA_STATUS_INVALID_SIZE,
                "rotation needs head_dim and value_dim powers of two (got "
                "%lld, %lld)",
                static_cast<long long>(D), static_cast<long long>(Dv));
  }
  gqa_block_cache_layout l{};
  RowShape(c.dtype, D, &l.k_row_bytes, &l.k_row_scales);
  RowShape(c.dtype, Dv, &l.v_row_bytes, &l.v_row_scales);
  // Regions [bt][Hkv][row]: at most 4096 * Hkv * 16 KiB each.
  int64_t rows = 0, kc = 0, ks = 0, vc = 0, vs = 0;
  if (!CheckedMul(c.block_tokens, c.kv_heads, &rows) ||
      !CheckedProduct({rows, l.k_row_bytes}, kMaxElements, &kc) ||
      !CheckedProduct({rows, 2 * l.k_row_scales}, kMaxElements, &ks) ||
      !CheckedProduct({rows, l.v_row_bytes}, kMaxElements, &vc) ||
      !CheckedProduct({rows, 2 * l.v_row_scales}, kMaxElements, &vs)) {
    return Fail(GQA_STATUS_SIZE_OVERFLOW, "cache block size overflows");
  }
  l.k_codes = 0;
  l.k_scales = Align64(kc);
  l.v_codes = l.k_scales + Align64(ks);
  l.v_scales = l.v_codes + Align64(vc);
  l.block_bytes = l.v_scales + Align64(vs);
  l.table_columns = (c.capacity + c.block_tokens - 1) / c.block_tokens;
  int64_t entries = 0;
  if (!FitsSizeT(l.block_bytes) ||
      !CheckedProduct({c.batch, l.table_columns}, kMaxElements, &entries)) {
    return Fail(GQA_STATUS_SIZE_OVERFLOW, "cache sizes overflow");
  }
  *out = l;
  return GQA_STATUS_OK;
}

gqa_status ValidateBlockCache(const gqa_block_cache* c, BlockCacheView* v) {
  NotifyDebugHook("validate_cache");
  if (!c) return Fail(GQA_STATUS_NULL_POINTER, "cache is NULL");
  gqa_status s = LayoutOf(c->config, &v->layout);
  if (s != GQA_STATUS_OK) return s;
  v->cache = c;
  v->value_dim = c->config.value_dim ? c->config.value_dim : c->config.head_dim;
  v->ring = (c->config.flags & GQA_BLOCK_CACHE_RING) != 0;
  v->rotate = (c->config.flags & GQA_BLOCK_CACHE_ROTATE) != 0;
  if (!c->blocks || !c->block_table || !c->lengths) {
    return Fail(GQA_STATUS_NULL_POINTER, "cache `%s` is NULL",
                !c->blocks        ? "blocks"
                : !c->block_table ? "block_table"
                                  : "lengths");
  }
  if (reinterpret_cast<uintptr_t>(c->blocks) % 64 != 0) {
    return Fail(GQA_STATUS_INVALID_ARGUMENT,
                "cache blocks must be 64-byte aligned");
  }
  int64_t pool = 0;
  if (c->num_blocks <= 0 || c->num_blocks > INT32_MAX ||
      !CheckedMul(c->num_blocks, v->layout.block_bytes, &pool) ||
      !FitsSizeT(pool)) {
    return Fail(GQA_STATUS_INVALID_SIZE,
                "num_blocks = %lld must be in [1, 2^31) with the pool's "
                "bytes representable",
                static_cast<long long>(c->num_blocks));
  }
  const int64_t B = c->config.batch, cols = v->layout.table_columns;
  const ByteRange pool_range = RangeOf(c->blocks, pool, 1);
  if (Overlap(pool_range, RangeOf(c->block_table, B * cols, 4)) ||
      Overlap(pool_range, RangeOf(c->lengths, B, 8)) ||
      Overlap(RangeOf(c->block_table, B * cols, 4),
              RangeOf(c->lengths, B, 8)) ||
      (v->ring && (Overlap(pool_range, RangeOf(c->held_from, B, 8)) ||
                   Overlap(RangeOf(c->block_table, B * cols, 4),
                           RangeOf(c->held_from, B, 8))))) {
    return Fail(GQA_STATUS_INVALID_ARGUMENT,
                "the cache's blocks, block_table, lengths and held_from "
                "overlap");
  }
  for (int64_t b = 0; b < B; ++b) {
    const int64_t len = c->lengths[b];
    if (len < 0 || (!v->ring && len > c->config.capacity) ||
        len > kMaxPosition) {
      return Fail(GQA_STATUS_INVALID_ARGUMENT,
                  "cache lengths[%lld] = %lld is outside [0, %s]",
                  static_cast<long long>(b), static_cast<long long>(len),
                  v->ring ? "2^24" : "capacity");
    }
    const int64_t held = HeldSlots(*v, len);
    const int64_t held_cols =
        (held + c->config.block_tokens - 1) / c->config.block_tokens;
    for (int64_t col = 0; col < cols; ++col) {
      const int32_t e = c->block_table[b * cols + col];
      if (e < -1 || e >= c->num_blocks) {
        return Fail(GQA_STATUS_INVALID_ARGUMENT,
                    "block_table[%lld][%lld] = %d is neither -1 nor a block "
                    "of the pool (num_blocks %lld)",
                    static_cast<long long>(b), static_cast<long long>(col), e,
                    static_cast<long long>(c->num_blocks));
      }
      if (e == -1 && col < held_cols) {
        return Fail(GQA_STATUS_BLOCK_MISSING,
                    "batch %lld holds tokens in table column %lld, which has "
                    "no block (-1)",
                    static_cast<long long>(b), static_cast<long long>(col));
      }
    }
  }
  return ValidateHeldFrom(PositionsOf(*v));
}

gqa_status ValidateBlockAppend(const BlockCacheView& v, int64_t new_tokens,
                               const int64_t* counts, const void* k_new,
                               const void* v_new, int32_t src_dtype) {
  const gqa_block_cache& c = *v.cache;
  const gqa_block_cache_config& cf = c.config;
  if (new_tokens < 0) {
    return Fail(GQA_STATUS_INVALID_SIZE, "new_tokens must be >= 0, got %lld",
                static_cast<long long>(new_tokens));
  }
  if (!k_new || !v_new)
    return Fail(GQA_STATUS_NULL_POINTER, "k_new or v_new is NULL");
  if (!ValidDtype(src_dtype)) {
    return Fail(GQA_STATUS_INVALID_ENUM, "source dtype %d is not f32 or f16",
                src_dtype);
  }
  int64_t k_elems = 0, v_elems = 0;
  if (!CheckedProduct({cf.batch, new_tokens, cf.kv_heads, cf.head_dim},
                      kMaxElements, &k_elems) ||
      !CheckedProduct({cf.batch, new_tokens, cf.kv_heads, v.value_dim},
                      kMaxElements, &v_elems)) {
    return Fail(GQA_STATUS_SIZE_OVERFLOW,
                "new_tokens = %lld: the [B, new_tokens, Hkv, D] sources "
                "overflow",
                static_cast<long long>(new_tokens));
  }
  const int64_t cols = v.layout.table_columns, bt = cf.block_tokens;
  for (int64_t b = 0; b < cf.batch; ++b) {
    const int64_t n = counts ? counts[b] : new_tokens;
    if (n < 0 || n > new_tokens) {
      return Fail(GQA_STATUS_INVALID_ARGUMENT,
                  "counts[%lld] = %lld is outside [0, %lld]",
                  static_cast<long long>(b), static_cast<long long>(n),
                  static_cast<long long>(new_tokens));
    }
    const int64_t len = c.lengths[b];
    const int64_t limit = v.ring ? kMaxPosition : cf.capacity;
    if (n > limit - len) {
      return Fail(GQA_STATUS_CACHE_OVERFLOW,
                  "batch %lld: %lld cached + %lld new tokens exceed the %s "
                  "of %lld",
                  static_cast<long long>(b), static_cast<long long>(len),
                  static_cast<long long>(n),
                  v.ring ? "ring's position limit" : "capacity",
                  static_cast<long long>(limit));
    }
    // The slots written: positions [len + skip, len + n) (a ring keeps the
    // last `capacity` of a long append). Every column they touch needs a
    // block: one check per column run (at most columns + 1).
    const int64_t skip = v.ring && n > cf.capacity ? n - cf.capacity : 0;
    for (int64_t pos = len + skip; pos < len + n;) {
      const int64_t slot = v.ring ? pos % cf.capacity : pos;
      const int64_t col = slot / bt;
      if (c.block_table[b * cols + col] < 0) {
        return Fail(GQA_STATUS_BLOCK_MISSING,
                    "batch %lld: position %lld goes to table column %lld, "
                    "which has no block (-1)",
                    static_cast<long long>(b), static_cast<long long>(pos),
                    static_cast<long long>(col));
      }
      const int64_t to_col_end = bt - slot % bt;
      const int64_t to_ring_end = cf.capacity - slot;
      pos += to_col_end < to_ring_end ? to_col_end : to_ring_end;
    }
  }
  // The sources are read while blocks, table and lengths are written.
  const int64_t pool = c.num_blocks * v.layout.block_bytes;
  const int64_t se = DtypeBytes(src_dtype);
  // counts too: it is read again while lengths and blocks are written.
  const ByteRange srcs[3] = {RangeOf(k_new, k_elems, se),
                             RangeOf(v_new, v_elems, se),
                             RangeOf(counts, cf.batch, 8)};
  const ByteRange dsts[4] = {
      RangeOf(c.blocks, pool, 1), RangeOf(c.block_table, cf.batch * cols, 4),
      RangeOf(c.lengths, cf.batch, 8),
      RangeOf(v.ring ? c.held_from : nullptr, cf.batch, 8)};
  for (const ByteRange& src : srcs) {
    for (const ByteRange& dst : dsts) {
      if (Overlap(src, dst)) {
        return Fail(GQA_STATUS_INVALID_ARGUMENT,
                    "k_new, v_new or counts overlap the cache's blocks, "
                    "table or lengths");
      }
    }
  }
  return GQA_STATUS_OK;
}

gqa_status BlockRopePositionsApart(const BlockCacheView& v,
                                   const int64_t* positions,
                                   int64_t new_tokens) {
  const gqa_block_cache& c = *v.cache;
  const int64_t B = c.config.batch;
  const ByteRange pos = RangeOf(positions, B * new_tokens, 8);
  if (Overlap(pos, RangeOf(c.blocks, c.num_blocks * v.layout.block_bytes, 1)) ||
      Overlap(pos, RangeOf(c.block_table, B * v.layout.table_columns, 4)) ||
      Overlap(pos, RangeOf(c.lengths, B, 8)) ||
      Overlap(pos, RangeOf(v.ring ? c.held_from : nullptr, B, 8))) {
    return Fail(GQA_STATUS_INVALID_ARGUMENT,
                "positions overlap the cache's blocks, table, lengths or "
                "held_from");
  }
  return GQA_STATUS_OK;
}

void AppendBlockRows(const BlockCacheView& v, gqa_block_cache* c,
                     int64_t new_tokens, const int64_t* counts,
                     const void* k_new, const void* v_new, int32_t src_dtype,
                     int64_t k_row_stride, int64_t v_row_stride,
                     const CacheRope* k_rope) {
  const gqa_block_cache_config& cf = c->config;
  RopeAngles angles;  // of the token being stored (with k_rope)
  RowRope rope;
  if (k_rope && k_rope->on) rope.plan = &k_rope->plan, rope.angles = &angles;
  const gqa_block_cache_layout& l = v.layout;
  const int64_t H = cf.kv_heads, D = cf.head_dim, Dv = v.value_dim;
  const int64_t ks = k_row_stride > 0 ? k_row_stride : H * D;
  const int64_t vs = v_row_stride > 0 ? v_row_stride : H * Dv;
  const int64_t se = DtypeBytes(src_dtype), bt = cf.block_tokens;
  const unsigned char* kn = static_cast<const unsigned char*>(k_new);
  const unsigned char* vn = static_cast<const unsigned char*>(v_new);
  for (int64_t b = 0; b < cf.batch; ++b) {
    const int64_t n = counts ? counts[b] : new_tokens;
    const int64_t skip = v.ring && n > cf.capacity ? n - cf.capacity : 0;
    for (int64_t i = skip; i < n; ++i) {
      const int64_t pos = c->lengths[b] + i;
      const int64_t slot = v.ring ? pos % cf.capacity : pos;
      unsigned char* blk = BlockOf(v, b, slot / bt);
      const int64_t row0 = (slot % bt) * H;
      const int64_t src = b * new_tokens + i;
      if (rope.plan) {
        RopeAnglesAt(*rope.plan,
                     RopePositionOf(*k_rope, b, new_tokens, i, c->lengths[b]),
                     &angles);
      }
      for (int64_t g = 0; g < H; ++g) {
        const int64_t r = row0 + g;
        StoreRow(v, kn + (src * ks + g * D) * se, src_dtype, D,
                 blk + l.k_codes + r * l.k_row_bytes,
                 blk + l.k_scales + r * l.k_row_scales * 2, rope);
        StoreRow(v, vn + (src * vs + g * Dv) * se, src_dtype, Dv,
                 blk + l.v_codes + r * l.v_row_bytes,
                 blk + l.v_scales + r * l.v_row_scales * 2);
      }
    }
    c->lengths[b] += n;
  }
  RaiseHeldFrom(PositionsOf(v));
}

}  // namespace gqa

extern "C" {

gqa_status gqa_block_cache_layout_of(const gqa_block_cache_config* config,
                                     gqa_block_cache_layout* layout) {
  if (!config || !layout) {
    return gqa::Fail(GQA_STATUS_NULL_POINTER, "config or layout is NULL");
  }
  return gqa::LayoutOf(*config, layout);
}

gqa_status gqa_block_cache_append(gqa_block_cache* cache, int64_t new_tokens,
                                  const int64_t* counts, const void* k_new,
                                  const void* v_new, int32_t src_dtype) {
  return gqa_block_cache_append_rope(cache, new_tokens, counts, k_new, v_new,
                                     src_dtype, nullptr, nullptr);
}

gqa_status gqa_block_cache_append_rope(gqa_block_cache* cache,
                                       int64_t new_tokens,
                                       const int64_t* counts, const void* k_new,
                                       const void* v_new, int32_t src_dtype,
                                       const gqa_rope_params* rope,
                                       const int64_t* positions) {
  gqa::BlockCacheView v;
  gqa_status s = gqa::ValidateBlockCache(cache, &v);
  if (s != GQA_STATUS_OK) return s;
  s = gqa::ValidateBlockAppend(v, new_tokens, counts, k_new, v_new, src_dtype);
  if (s != GQA_STATUS_OK) return s;
  gqa::CacheRope k_rope;
  s = gqa::ValidateCacheRope(rope, positions, cache->config.batch, new_tokens,
                             counts, cache->config.head_dim, true, "k_rope",
                             &k_rope);
  if (s != GQA_STATUS_OK) return s;
  if ((s = gqa::BlockRopePositionsApart(v, positions, new_tokens)) !=
      GQA_STATUS_OK) {
    return s;
  }
  gqa::AppendBlockRows(v, cache, new_tokens, counts, k_new, v_new, src_dtype, 0,
                       0, &k_rope);
  return GQA_STATUS_OK;
}

}  // extern "C"
