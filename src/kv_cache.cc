// KV cache operator: validation, append (with dtype conversion, ring slots)
// and attention of the newest queries against the cache through the core.
#include "src/kv_cache.h"

#include <math.h>
#include <pthreadpool.h>
#include <string.h>

#include "gqa/kv_cache.h"
#include "src/attention_core.h"
#include "src/dense_f16.h"
#include "src/status.h"

namespace gqa {
namespace {

bool ValidDtype(int32_t d) { return d == GQA_DTYPE_F32 || d == GQA_DTYPE_F16; }
size_t ElemSize(int32_t d) { return d == GQA_DTYPE_F16 ? 2 : 4; }

// Elements of each of k and v in a validated cache.
int64_t CacheElements(const gqa_kv_cache& c) {
  return c.batch * c.capacity * c.kv_heads * c.head_dim;
}

// Offsets region at the front of the attend workspace: B int64, rounded.
int64_t OffsetsBytes(int64_t batch) { return (batch * 8 + 63) / 64 * 64; }

// The core's view of the attend call (pointers may be null when sizing).
AttentionParams CoreParams(const gqa_kv_cache& c, const gqa_kv_attend_params& a,
                           const int64_t* offsets, int64_t q_token_stride) {
  AttentionParams p;
  p.batch = c.batch;
  p.q_len = a.q_len;
  p.kv_len = c.capacity;
  p.q_heads = a.q_heads;
  p.kv_heads = c.kv_heads;
  p.head_dim = c.head_dim;
  p.q = a.q;
  p.q_stride_h = c.head_dim;
  p.q_stride_t = q_token_stride > 0 ? q_token_stride : a.q_heads * c.head_dim;
  p.q_stride_b = a.q_len * p.q_stride_t;
  p.q_type = a.q_dtype == GQA_DTYPE_F16 ? ElemType::kF16 : ElemType::kF32;
  p.k = c.k;
  p.v = c.v;
  p.k_stride_h = p.v_stride_h = c.head_dim;
  p.k_stride_s = p.v_stride_s = c.kv_heads * c.head_dim;
  p.k_stride_b = p.v_stride_b = c.capacity * c.kv_heads * c.head_dim;
  p.kv_type = c.dtype == GQA_DTYPE_F16 ? ElemType::kF16 : ElemType::kF32;
  p.out = a.out;
  p.out_type = a.out_dtype == GQA_DTYPE_F16 ? ElemType::kF16 : ElemType::kF32;
  p.out_stride_h = c.head_dim;
  p.out_stride_t = a.q_heads * c.head_dim;
  p.out_stride_b = a.q_len * a.q_heads * c.head_dim;
  p.scale =
      a.scale > 0.0f
          ? a.scale
          : static_cast<float>(1.0 / sqrt(static_cast<double>(c.head_dim)));
  p.causal = true;
  p.position_offsets = offsets;
  p.key_lengths = c.lengths;
  p.ring_capacity = c.ring ? c.capacity : 0;
  p.sliding_window = EffectiveWindow(a.sliding_window);
  p.fully_masked_uniform = a.fully_masked_policy != GQA_FULLY_MASKED_ZERO;
  return p;
}

}  // namespace

gqa_status ValidateCache(const gqa_kv_cache* c) {
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
  return GQA_STATUS_OK;
}

gqa_status ValidateAppend(const gqa_kv_cache* c, int64_t new_tokens,
                          const int64_t* counts, const void* k_new,
                          const void* v_new, int32_t src_dtype) {
  gqa_status s = ValidateCache(c);
  if (s != GQA_STATUS_OK) return s;
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
  const int64_t se = static_cast<int64_t>(ElemSize(src_dtype));
  const int64_t ce = static_cast<int64_t>(ElemSize(c->dtype));
  const ByteRange srcs[2] = {RangeOf(k_new, src_elems, se),
                             RangeOf(v_new, src_elems, se)};
  const int64_t cached = CacheElements(*c);
  const ByteRange dsts[3] = {RangeOf(c->k, cached, ce),
                             RangeOf(c->v, cached, ce),
                             RangeOf(c->lengths, c->batch, 8)};
  for (const ByteRange& src : srcs) {
    for (const ByteRange& dst : dsts) {
      if (Overlap(src, dst)) {
        return Fail(GQA_STATUS_INVALID_ARGUMENT,
                    "k_new/v_new overlap the cache's k, v or lengths");
      }
    }
  }
  return GQA_STATUS_OK;
}

void AppendRows(gqa_kv_cache* c, int64_t new_tokens, const int64_t* counts,
                const void* k_new, const void* v_new, int32_t src_dtype,
                int64_t src_row_stride) {
  const int64_t row = c->kv_heads * c->head_dim;
  const int64_t src_stride = src_row_stride > 0 ? src_row_stride : row;
  const size_t src_elem = ElemSize(src_dtype), dst_elem = ElemSize(c->dtype);
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
        if (src_dtype == c->dtype) {
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
}

gqa_status ValidateAttend(const gqa_kv_cache* c, const gqa_kv_attend_params* a,
                          bool need_pointers) {
  gqa_status s = ValidateCache(c);
  if (s != GQA_STATUS_OK) return s;
  if (!a) return Fail(GQA_STATUS_NULL_POINTER, "params is NULL");
  if (a->q_len <= 0 || a->q_heads <= 0) {
    return Fail(GQA_STATUS_INVALID_SIZE,
                "q_len and q_heads must be > 0 (got %lld, %lld)",
                static_cast<long long>(a->q_len),
                static_cast<long long>(a->q_heads));
  }
  if (a->q_heads % c->kv_heads != 0) {
    return Fail(
        GQA_STATUS_HEADS_NOT_DIVISIBLE,
        "q_heads (%lld) must be a multiple of the cache's kv_heads (%lld)",
        static_cast<long long>(a->q_heads),
        static_cast<long long>(c->kv_heads));
  }
  if (need_pointers && (!a->q || !a->out)) {
    return Fail(GQA_STATUS_NULL_POINTER, "`%s` is NULL", !a->q ? "q" : "out");
  }
  if (!ValidDtype(a->q_dtype) || !ValidDtype(a->out_dtype)) {
    return Fail(GQA_STATUS_INVALID_ENUM, "q/out dtypes must be f32 or f16");
  }
  if (a->fully_masked_policy < GQA_FULLY_MASKED_KERAS ||
      a->fully_masked_policy > GQA_FULLY_MASKED_UNIFORM) {
    return Fail(GQA_STATUS_INVALID_ENUM, "unknown fully_masked_policy %d",
                a->fully_masked_policy);
  }
  if (!(a->scale >= 0.0f) || isinf(a->scale)) {
    return Fail(GQA_STATUS_INVALID_ARGUMENT, "`scale` must be finite and >= 0");
  }
  if (a->sliding_window < 0) {
    return Fail(GQA_STATUS_INVALID_SLIDING_WINDOW,
                "`sliding_window` must be >= 0, got %lld",
                static_cast<long long>(a->sliding_window));
  }
  if (a->q_len > kMaxPosition) {
    return Fail(GQA_STATUS_SIZE_OVERFLOW, "q_len must be <= 2^24, got %lld",
                static_cast<long long>(a->q_len));
  }
  if (c->ring && !RingWindowFits(a->sliding_window, a->q_len, c->capacity)) {
    return Fail(GQA_STATUS_INVALID_ARGUMENT,
                "a ring cache of %lld slots needs a sliding window W with W + "
                "T - 1 <= %lld "
                "(W = %lld, T = %lld)",
                static_cast<long long>(c->capacity),
                static_cast<long long>(c->capacity),
                static_cast<long long>(a->sliding_window),
                static_cast<long long>(a->q_len));
  }
  int64_t n = 0;
  if (!CheckedProduct({c->batch, a->q_len, a->q_heads, c->head_dim},
                      kMaxElements, &n) ||
      !CheckedProduct({c->batch, a->q_heads, a->q_len, c->capacity},
                      INT64_MAX >> 3, &n)) {
    return Fail(GQA_STATUS_SIZE_OVERFLOW, "query sizes overflow");
  }
  if (need_pointers) {
    // out is written while q and the cache are read.
    const int64_t q_elems = c->batch * a->q_len * a->q_heads * c->head_dim;
    auto es = [](int32_t d) { return static_cast<int64_t>(ElemSize(d)); };
    const ByteRange out = RangeOf(a->out, q_elems, es(a->out_dtype));
    const ByteRange ins[4] = {RangeOf(a->q, q_elems, es(a->q_dtype)),
                              RangeOf(c->k, CacheElements(*c), es(c->dtype)),
                              RangeOf(c->v, CacheElements(*c), es(c->dtype)),
                              RangeOf(c->lengths, c->batch, 8)};
    for (const ByteRange& in : ins) {
      if (Overlap(out, in)) {
        return Fail(GQA_STATUS_INVALID_ARGUMENT,
                    "`out` overlaps q or the cache (outputs must not alias "
                    "inputs)");
      }
    }
  }
  if (need_pointers) {
    for (int64_t b = 0; b < c->batch; ++b) {
      if (c->lengths[b] < a->q_len) {
        return Fail(
            GQA_STATUS_INVALID_ARGUMENT,
            "batch %lld has %lld cached tokens, fewer than the %lld queries "
            "(append the new tokens first)",
            static_cast<long long>(b), static_cast<long long>(c->lengths[b]),
            static_cast<long long>(a->q_len));
      }
    }
  }
  return GQA_STATUS_OK;
}

int64_t AttendWorkspaceBytes(const gqa_kv_cache& c,
                             const gqa_kv_attend_params& a, int64_t slots) {
  const AttentionPlan plan = PlanAttention(CoreParams(c, a, nullptr, 0));
  int64_t bytes = 0;
  if (!CheckedMul(plan.slot_bytes, slots, &bytes) ||
      !CheckedAdd(bytes, plan.shared_bytes, &bytes) ||
      !CheckedAdd(bytes, OffsetsBytes(c.batch), &bytes) || !FitsSizeT(bytes)) {
    return -1;
  }
  return bytes;
}

int64_t AttendSlotBytes(const gqa_kv_cache& c, const gqa_kv_attend_params& a) {
  return PlanAttention(CoreParams(c, a, nullptr, 0)).slot_bytes;
}

void RunAttendValidated(const gqa_kv_cache& c, const gqa_kv_attend_params& a,
                        int64_t q_token_stride, void* workspace, int64_t slots,
                        pthreadpool_t pool) {
  int64_t* offsets = static_cast<int64_t*>(workspace);
  for (int64_t b = 0; b < c.batch; ++b) offsets[b] = c.lengths[b] - a.q_len;
  const AttentionParams p = CoreParams(c, a, offsets, q_token_stride);
  RunAttention(p,
               static_cast<unsigned char*>(workspace) + OffsetsBytes(c.batch),
               slots, pool);
}

}  // namespace gqa

extern "C" {

gqa_status gqa_kv_cache_append(gqa_kv_cache* cache, int64_t new_tokens,
                               const int64_t* counts, const void* k_new,
                               const void* v_new, int32_t src_dtype) {
  const gqa_status s =
      gqa::ValidateAppend(cache, new_tokens, counts, k_new, v_new, src_dtype);
  if (s != GQA_STATUS_OK) return s;
  gqa::AppendRows(cache, new_tokens, counts, k_new, v_new, src_dtype, 0);
  return GQA_STATUS_OK;
}

gqa_status gqa_kv_cache_attend_workspace_size(
    const gqa_kv_cache* cache, const gqa_kv_attend_params* params,
    int64_t max_threads, size_t* size_out) {
  if (!size_out) return gqa::Fail(GQA_STATUS_NULL_POINTER, "size_out is NULL");
  if (max_threads <= 0) {
    return gqa::Fail(GQA_STATUS_INVALID_SIZE, "max_threads must be > 0");
  }
  const gqa_status s =
      gqa::ValidateAttend(cache, params, /*need_pointers=*/false);
  if (s != GQA_STATUS_OK) return s;
  const int64_t bytes = gqa::AttendWorkspaceBytes(*cache, *params, max_threads);
  if (bytes < 0) {
    return gqa::Fail(GQA_STATUS_SIZE_OVERFLOW,
                     "workspace size for %lld threads overflows",
                     static_cast<long long>(max_threads));
  }
  *size_out = static_cast<size_t>(bytes);
  return GQA_STATUS_OK;
}

gqa_status gqa_kv_cache_attend(const gqa_kv_cache* cache,
                               const gqa_kv_attend_params* params,
                               void* workspace, size_t workspace_size,
                               pthreadpool_t threadpool) {
  const gqa_status s =
      gqa::ValidateAttend(cache, params, /*need_pointers=*/true);
  if (s != GQA_STATUS_OK) return s;
  if (!workspace)
    return gqa::Fail(GQA_STATUS_NULL_POINTER, "workspace is NULL");
  if (reinterpret_cast<uintptr_t>(workspace) % GQA_WORKSPACE_ALIGNMENT != 0) {
    return gqa::Fail(GQA_STATUS_WORKSPACE_MISALIGNED,
                     "workspace must be aligned to %d bytes",
                     GQA_WORKSPACE_ALIGNMENT);
  }
  const int64_t one = gqa::AttendWorkspaceBytes(*cache, *params, 1);
  if (one < 0) {
    return gqa::Fail(GQA_STATUS_SIZE_OVERFLOW, "workspace size overflows");
  }
  if (workspace_size < static_cast<size_t>(one)) {
    return gqa::Fail(GQA_STATUS_WORKSPACE_TOO_SMALL,
                     "workspace has %zu bytes, this call needs %lld",
                     workspace_size, static_cast<long long>(one));
  }
  int64_t slots =
      threadpool
          ? static_cast<int64_t>(pthreadpool_get_threads_count(threadpool))
          : 1;
  const int64_t room =
      1 + static_cast<int64_t>(
              (workspace_size - static_cast<size_t>(one)) /
              static_cast<size_t>(gqa::AttendSlotBytes(*cache, *params)));
  if (slots > room) slots = room;
  gqa::RunAttendValidated(*cache, *params, 0, workspace, slots, threadpool);
  return GQA_STATUS_OK;
}

}  // extern "C"
