// KV cache operator: validation, append (with dtype conversion, ring slots)
// and attention of the newest queries against the cache through the core.
#include "src/kv_cache.h"

#include <pthreadpool.h>
#include <string.h>

#include "gqa/kv_cache.h"
#include "src/attention_core.h"
#include "src/cache_rope.h"
#include "src/debug_hook.h"
#include "src/elementwise.h"
#include "src/operator.h"
#include "src/status.h"

namespace gqa {
namespace {

// Elements of each of k and v in a validated cache.
int64_t CacheElements(const gqa_kv_cache& c) {
  return c.batch * c.capacity * c.kv_heads * c.head_dim;
}

int64_t Round64(int64_t x) { return (x + 63) / 64 * 64; }

// The key rows of one token [Hkv][D] from src (f32 or f16) into dst (the
// cache's dtype), each normed and rotated at `position` on the way.
void StoreRopeRows(const CacheRope& r, int64_t position, const void* src,
                   int32_t src_dtype, void* dst, int32_t dtype, int64_t heads) {
  const int64_t D = r.plan.head_dim;
  RopeAngles angles;
  RopeAnglesAt(r.plan, position, &angles);
  float row[kMaxRopeHeadDim];
  for (int64_t h = 0; h < heads; ++h) {
    if (src_dtype == GQA_DTYPE_F16) {
      ConvertF16ToF32(static_cast<const uint16_t*>(src) + h * D, row,
                      static_cast<size_t>(D));
    } else {
      memcpy(row, static_cast<const float*>(src) + h * D,
             static_cast<size_t>(D) * 4);
    }
    RopeRowF32(r.plan, angles, row);
    if (dtype == GQA_DTYPE_F16) {
      ConvertF32ToF16(row, static_cast<uint16_t*>(dst) + h * D,
                      static_cast<size_t>(D));
    } else {
      memcpy(static_cast<float*>(dst) + h * D, row, static_cast<size_t>(D) * 4);
    }
  }
}

// The core's view of the attend call; q, out and the query offsets are
// bound by RunAttend.
AttentionParams CoreParams(const gqa_kv_cache& c,
                           const gqa_kv_attend_params& a) {
  AttentionParams p;
  p.batch = c.batch;
  p.q_len = a.q_len;
  p.kv_len = c.capacity;
  p.q_heads = a.q_heads;
  p.kv_heads = c.kv_heads;
  p.head_dim = c.head_dim;
  p.q_stride_head = c.head_dim;
  p.q_stride_token = a.q_heads * c.head_dim;
  p.q_stride_batch = a.q_len * p.q_stride_token;
  p.q_type = ToElem(a.q_dtype);
  p.k = c.k;
  p.v = c.v;
  p.k_stride_head = p.v_stride_head = c.head_dim;
  p.k_stride_token = p.v_stride_token = c.kv_heads * c.head_dim;
  p.k_stride_batch = p.v_stride_batch = c.capacity * c.kv_heads * c.head_dim;
  p.kv_type = ToElem(c.dtype);
  p.out_type = ToElem(a.out_dtype);
  p.out_stride_head = c.head_dim;
  p.out_stride_token = a.q_heads * c.head_dim;
  p.out_stride_batch = a.q_len * a.q_heads * c.head_dim;
  p.scale = ResolveScale(a.scale, c.head_dim);
  p.causal = true;
  p.key_lengths = c.lengths;
  p.ring_capacity = c.ring ? c.capacity : 0;
  p.sliding_window = EffectiveWindow(a.sliding_window);
  // No scores or dropout here: Keras' policy gives uniform rows.
  p.fully_masked_uniform = UniformFullyMasked(a.fully_masked_policy, false);
  p.tree_mask = a.tree_mask;
  p.tree_stride_batch = a.q_len * a.q_len;
  p.held_from = c.ring ? c.held_from : nullptr;
  p.softcap = a.softcap;
  p.alibi_slopes = a.alibi_slopes;
  p.sinks = a.sinks;
  return p;
}

}  // namespace

gqa_status RopePositionsApart(const gqa_kv_cache& c, const int64_t* positions,
                              int64_t new_tokens) {
  const ByteRange pos = RangeOf(positions, c.batch * new_tokens, 8);
  const int64_t ce = DtypeBytes(c.dtype);
  if (Overlap(pos, RangeOf(c.k, CacheElements(c), ce)) ||
      Overlap(pos, RangeOf(c.v, CacheElements(c), ce)) ||
      Overlap(pos, RangeOf(c.lengths, c.batch, 8)) ||
      Overlap(pos, RangeOf(c.ring ? c.held_from : nullptr, c.batch, 8))) {
    return Fail(GQA_STATUS_INVALID_ARGUMENT,
                "positions overlap the cache's k, v, lengths or held_from");
  }
  return GQA_STATUS_OK;
}

CachePositions PositionsOf(const gqa_kv_cache& c) {
  CachePositions p;
  p.batch = c.batch;
  p.capacity = c.capacity;
  p.ring = c.ring != 0;
  p.lengths = c.lengths;
  p.held_from = c.held_from;
  return p;
}

int64_t CacheBytes(const gqa_kv_cache& c) {
  return CacheElements(c) * DtypeBytes(c.dtype);
}

gqa_status ValidateCache(const gqa_kv_cache* c) {
  NotifyDebugHook("validate_cache");
  if (!c) return Fail(GQA_STATUS_NULL_POINTER, "cache is NULL");
  const struct {
    const char* name;
    int64_t value;
  } sizes[] = {{"batch", c->batch},
               {"capacity", c->capacity},
               {"kv_heads", c->kv_heads},
               {"head_dim", c->head_dim}};
  for (const auto& s : sizes) {
    if (s.value <= 0) {
      return Fail(GQA_STATUS_INVALID_SIZE, "cache `%s` must be > 0, got %lld",
                  s.name, static_cast<long long>(s.value));
    }
  }
  if (!ValidDtype(c->dtype)) {
    return Fail(GQA_STATUS_INVALID_ENUM, "cache dtype %d is not f32 or f16",
                c->dtype);
  }
  if (!c->k || !c->v || !c->lengths) {
    return Fail(GQA_STATUS_NULL_POINTER, "cache `%s` is NULL",
                !c->k   ? "k"
                : !c->v ? "v"
                        : "lengths");
  }
  int64_t n = 0;
  if (!CheckedProduct({c->batch, c->capacity, c->kv_heads, c->head_dim},
                      kMaxElements, &n) ||
      c->capacity > kMaxPosition) {
    return Fail(GQA_STATUS_SIZE_OVERFLOW,
                "cache sizes overflow (capacity <= 2^24)");
  }
  for (int64_t b = 0; b < c->batch; ++b) {
    const int64_t len = c->lengths[b];
    if (len < 0 || (!c->ring && len > c->capacity) || len > kMaxPosition) {
      return Fail(GQA_STATUS_INVALID_ARGUMENT,
                  "cache lengths[%lld] = %lld is outside [0, %s]",
                  static_cast<long long>(b), static_cast<long long>(len),
                  c->ring ? "2^24" : "capacity");
    }
  }
  if (c->ring) {
    const ByteRange held = RangeOf(c->held_from, c->batch, 8);
    if (Overlap(held, RangeOf(c->k, CacheElements(*c), DtypeBytes(c->dtype))) ||
        Overlap(held, RangeOf(c->v, CacheElements(*c), DtypeBytes(c->dtype)))) {
      return Fail(GQA_STATUS_INVALID_ARGUMENT,
                  "the cache's held_from overlaps its k or v");
    }
  }
  return ValidateHeldFrom(PositionsOf(*c));
}

gqa_status ValidateAppendTo(const gqa_kv_cache& cache, int64_t new_tokens,
                            const int64_t* counts, const void* k_new,
                            const void* v_new, int32_t src_dtype) {
  const gqa_kv_cache* c = &cache;
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
  // The sources are [B, new_tokens, Hkv, D]: their size must be
  // representable (AppendRows indexes them).
  int64_t src_elems = 0;
  if (!CheckedProduct({c->batch, new_tokens, c->kv_heads, c->head_dim},
                      kMaxElements, &src_elems)) {
    return Fail(GQA_STATUS_SIZE_OVERFLOW,
                "new_tokens = %lld: the [B, new_tokens, Hkv, D] sources "
                "overflow",
                static_cast<long long>(new_tokens));
  }
  for (int64_t b = 0; b < c->batch; ++b) {
    const int64_t n = counts ? counts[b] : new_tokens;
    if (n < 0 || n > new_tokens) {
      return Fail(GQA_STATUS_INVALID_ARGUMENT,
                  "counts[%lld] = %lld is outside [0, %lld]",
                  static_cast<long long>(b), static_cast<long long>(n),
                  static_cast<long long>(new_tokens));
    }
    // Written as a subtraction: lengths[b] is in [0, limit], so neither
    // side overflows.
    const int64_t limit = c->ring ? kMaxPosition : c->capacity;
    if (n > limit - c->lengths[b] || (c->ring && n > c->capacity)) {
      return Fail(
          GQA_STATUS_CACHE_OVERFLOW,
          "batch %lld: %lld cached + %lld new tokens exceed the %s of %lld",
          static_cast<long long>(b), static_cast<long long>(c->lengths[b]),
          static_cast<long long>(n),
          c->ring ? "ring's position limit" : "capacity",
          static_cast<long long>(limit));
    }
  }
  // The sources are read while the cache is written: no overlap.
  const int64_t se = DtypeBytes(src_dtype);
  const int64_t ce = DtypeBytes(c->dtype);
  // counts too: it is read again while lengths and the cache are written.
  const ByteRange srcs[3] = {RangeOf(k_new, src_elems, se),
                             RangeOf(v_new, src_elems, se),
                             RangeOf(counts, c->batch, 8)};
  const int64_t cached = CacheElements(*c);
  const ByteRange dsts[4] = {
      RangeOf(c->k, cached, ce), RangeOf(c->v, cached, ce),
      RangeOf(c->lengths, c->batch, 8),
      RangeOf(c->ring ? c->held_from : nullptr, c->batch, 8)};
  for (const ByteRange& src : srcs) {
    for (const ByteRange& dst : dsts) {
      if (Overlap(src, dst)) {
        return Fail(GQA_STATUS_INVALID_ARGUMENT,
                    "k_new, v_new or counts overlap the cache's k, v or "
                    "lengths");
      }
    }
  }
  return GQA_STATUS_OK;
}

void AppendRows(gqa_kv_cache* c, int64_t new_tokens, const int64_t* counts,
                const void* k_new, const void* v_new, int32_t src_dtype,
                int64_t src_row_stride, const CacheRope* k_rope) {
  const bool rope = k_rope && k_rope->on;
  const int64_t row = c->kv_heads * c->head_dim;
  const int64_t src_stride = src_row_stride > 0 ? src_row_stride : row;
  const size_t src_elem = static_cast<size_t>(DtypeBytes(src_dtype)),
               dst_elem = static_cast<size_t>(DtypeBytes(c->dtype));
  for (int64_t b = 0; b < c->batch; ++b) {
    const int64_t n = counts ? counts[b] : new_tokens;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t pos = c->lengths[b] + i;
      const int64_t slot = c->ring ? pos % c->capacity : pos;
      const size_t src_at =
          static_cast<size_t>((b * new_tokens + i) * src_stride);
      const size_t dst_at = static_cast<size_t>((b * c->capacity + slot) * row);
      const void* srcs[2] = {k_new, v_new};
      void* dsts[2] = {c->k, c->v};
      for (int which = 0; which < 2; ++which) {
        const unsigned char* src =
            static_cast<const unsigned char*>(srcs[which]) + src_at * src_elem;
        unsigned char* dst =
            static_cast<unsigned char*>(dsts[which]) + dst_at * dst_elem;
        if (which == 0 && rope) {
          StoreRopeRows(
              *k_rope, RopePositionOf(*k_rope, b, new_tokens, i, c->lengths[b]),
              src, src_dtype, dst, c->dtype, c->kv_heads);
        } else if (src_dtype == c->dtype) {
          memcpy(dst, src, static_cast<size_t>(row) * dst_elem);
        } else if (c->dtype == GQA_DTYPE_F16) {
          ConvertF32ToF16(reinterpret_cast<const float*>(src),
                          reinterpret_cast<uint16_t*>(dst),
                          static_cast<size_t>(row));
        } else {
          ConvertF16ToF32(reinterpret_cast<const uint16_t*>(src),
                          reinterpret_cast<float*>(dst),
                          static_cast<size_t>(row));
        }
      }
    }
    c->lengths[b] += n;
  }
  RaiseHeldFrom(PositionsOf(*c));
}

gqa_status ValidateAttendTo(const gqa_kv_cache& cache,
                            const gqa_kv_attend_params* a, bool need_pointers,
                            CacheRope* q_rope) {
  const gqa_kv_cache* c = &cache;
  CacheShape shape;
  shape.batch = c->batch, shape.kv_heads = c->kv_heads;
  shape.head_dim = c->head_dim, shape.capacity = c->capacity;
  shape.dtype = c->dtype, shape.ring = c->ring != 0;
  gqa_status s = ValidateCacheAttendArgs(shape, a, need_pointers);
  if (s != GQA_STATUS_OK) return s;
  if ((s = ValidateCacheRope(a->q_rope, a->q_positions, c->batch, a->q_len,
                             nullptr, c->head_dim, need_pointers, "q_rope",
                             q_rope)) != GQA_STATUS_OK ||
      !need_pointers) {
    return s;
  }
  // out is written while q and the cache are read.
  const int64_t q_elems = c->batch * a->q_len * a->q_heads * c->head_dim;
  const auto es = DtypeBytes;
  const ByteRange out = RangeOf(a->out, q_elems, es(a->out_dtype));
  const ByteRange ins[5] = {RangeOf(a->q, q_elems, es(a->q_dtype)),
                            RangeOf(c->k, CacheElements(*c), es(c->dtype)),
                            RangeOf(c->v, CacheElements(*c), es(c->dtype)),
                            RangeOf(c->lengths, c->batch, 8),
                            RangeOf(a->q_positions, c->batch * a->q_len, 8)};
  for (const ByteRange& in : ins) {
    if (Overlap(out, in)) {
      return Fail(GQA_STATUS_INVALID_ARGUMENT,
                  "`out` overlaps q, q_positions or the cache (outputs must "
                  "not alias inputs)");
    }
  }
  const gqa_status fit = CachedQueriesFit(c->lengths, c->batch, a->q_len);
  if (fit != GQA_STATUS_OK) return fit;
  return CheckAttendHeld(PositionsOf(*c), a->q_len,
                         EffectiveWindow(a->sliding_window));
}

AttendPlan PlanAttend(const gqa_kv_cache& c, const gqa_kv_attend_params& a,
                      const CacheRope* q_rope) {
  AttendPlan ap;
  ap.core = CoreParams(c, a);
  ap.q_rope = q_rope && q_rope->on ? q_rope : nullptr;
  // Rotated queries are staged packed in f32.
  if (ap.q_rope) ap.core.q_type = ElemType::kF32;
  ap.plan = PlanAttention(ap.core);
  ap.offsets_bytes = Round64(c.batch * 8);
  ap.q_rows_bytes =
      ap.q_rope ? Round64(c.batch * a.q_len * a.q_heads * c.head_dim * 4) : 0;
  ap.q_f16 = a.q_dtype == GQA_DTYPE_F16;
  ap.need.fixed = ap.offsets_bytes + ap.q_rows_bytes + ap.plan.shared_bytes;
  ap.need.slot = ap.plan.slot_bytes;
  return ap;
}

void RunAttend(const gqa_kv_cache& c, const AttendPlan& ap, const void* q,
               int64_t q_token_stride, void* out, void* workspace,
               int64_t slots, pthreadpool_t pool) {
  int64_t* offsets = static_cast<int64_t*>(workspace);
  for (int64_t b = 0; b < c.batch; ++b) {
    offsets[b] = c.lengths[b] - ap.core.q_len;
  }
  AttentionParams p = ap.core;
  unsigned char* ws = static_cast<unsigned char*>(workspace);
  if (ap.q_rope) {
    float* staged = reinterpret_cast<float*>(ws + ap.offsets_bytes);
    StageRopeQueries(*ap.q_rope, c.lengths, c.batch, p.q_len, p.q_heads, q,
                     ap.q_f16, q_token_stride, staged);
    p.q = staged;
  } else {
    p.q = q;
    if (q_token_stride > 0) {
      p.q_stride_token = q_token_stride;
      p.q_stride_batch = p.q_len * q_token_stride;
    }
  }
  p.out = out;
  p.position_offsets = offsets;
  RunAttention(p, ap.plan, ws + ap.offsets_bytes + ap.q_rows_bytes, slots,
               pool);
}

}  // namespace gqa

extern "C" {

gqa_status gqa_kv_cache_append(gqa_kv_cache* cache, int64_t new_tokens,
                               const int64_t* counts, const void* k_new,
                               const void* v_new, int32_t src_dtype) {
  return gqa_kv_cache_append_rope(cache, new_tokens, counts, k_new, v_new,
                                  src_dtype, nullptr, nullptr);
}

gqa_status gqa_kv_cache_append_rope(gqa_kv_cache* cache, int64_t new_tokens,
                                    const int64_t* counts, const void* k_new,
                                    const void* v_new, int32_t src_dtype,
                                    const gqa_rope_params* rope,
                                    const int64_t* positions) {
  gqa_status s = gqa::ValidateCache(cache);
  if (s != GQA_STATUS_OK) return s;
  if ((s = gqa::ValidateAppendTo(*cache, new_tokens, counts, k_new, v_new,
                                 src_dtype)) != GQA_STATUS_OK) {
    return s;
  }
  gqa::CacheRope k_rope;
  if ((s = gqa::ValidateCacheRope(rope, positions, cache->batch, new_tokens,
                                  counts, cache->head_dim, true, "k_rope",
                                  &k_rope)) != GQA_STATUS_OK) {
    return s;
  }
  if ((s = gqa::RopePositionsApart(*cache, positions, new_tokens)) !=
      GQA_STATUS_OK) {
    return s;
  }
  gqa::AppendRows(cache, new_tokens, counts, k_new, v_new, src_dtype, 0,
                  &k_rope);
  return GQA_STATUS_OK;
}

gqa_status gqa_kv_cache_attend_workspace_size(
    const gqa_kv_cache* cache, const gqa_kv_attend_params* params,
    int64_t max_threads, size_t* size_out) {
  if (!size_out) return gqa::Fail(GQA_STATUS_NULL_POINTER, "size_out is NULL");
  if (max_threads <= 0) {
    return gqa::Fail(GQA_STATUS_INVALID_SIZE, "max_threads must be > 0");
  }
  gqa_status s = gqa::ValidateCache(cache);
  if (s != GQA_STATUS_OK) return s;
  gqa::CacheRope q_rope;
  s = gqa::ValidateAttendTo(*cache, params, /*need_pointers=*/false, &q_rope);
  if (s != GQA_STATUS_OK) return s;
  const gqa::AttendPlan plan = gqa::PlanAttend(*cache, *params, &q_rope);
  return gqa::WorkspaceSizeFor(plan.need, max_threads, size_out);
}

gqa_status gqa_kv_cache_attend(const gqa_kv_cache* cache,
                               const gqa_kv_attend_params* params,
                               void* workspace, size_t workspace_size,
                               pthreadpool_t threadpool) {
  gqa_status s = gqa::ValidateCache(cache);
  if (s != GQA_STATUS_OK) return s;
  gqa::CacheRope q_rope;
  s = gqa::ValidateAttendTo(*cache, params, /*need_pointers=*/true, &q_rope);
  if (s != GQA_STATUS_OK) return s;
  const gqa::AttendPlan plan = gqa::PlanAttend(*cache, *params, &q_rope);
  int64_t slots = 0;
  if ((s = gqa::FitWorkspace(plan.need, workspace, workspace_size, threadpool,
                             &slots)) != GQA_STATUS_OK) {
    return s;
  }
  gqa::RunAttend(*cache, plan, params->q, 0, params->out, workspace, slots,
                 threadpool);
  return GQA_STATUS_OK;
}

}  // extern "C"
