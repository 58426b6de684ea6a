// The operator lifecycle shared by the front doors: option rules and the one
// workspace check (see src/operator.h).
#include "src/operator.h"

#include <math.h>
#include <pthreadpool.h>

#include "src/status.h"

namespace gqa {

gqa_status ValidateOptions(const CoreOptions& o) {
  if (!ValidDtype(o.q_dtype) || !ValidDtype(o.kv_dtype) ||
      !ValidDtype(o.out_dtype) || !ValidDtype(o.scores_dtype)) {
    return Fail(GQA_STATUS_INVALID_ENUM,
                "dtypes must be GQA_DTYPE_F32 or GQA_DTYPE_F16 (q %d, kv %d, "
                "out %d, scores %d)",
                o.q_dtype, o.kv_dtype, o.out_dtype, o.scores_dtype);
  }
  if (o.fully_masked_policy != GQA_FULLY_MASKED_KERAS &&
      o.fully_masked_policy != GQA_FULLY_MASKED_ZERO &&
      o.fully_masked_policy != GQA_FULLY_MASKED_UNIFORM) {
    return Fail(GQA_STATUS_INVALID_ENUM, "unknown fully_masked_policy %d",
                o.fully_masked_policy);
  }
  if (!(o.scale >= 0.0f) || isinf(o.scale)) {
    return Fail(GQA_STATUS_INVALID_ARGUMENT,
                "`scale` must be finite and >= 0 (0: 1/sqrt(D)), got %g",
                static_cast<double>(o.scale));
  }
  if (o.sliding_window < 0) {
    return Fail(GQA_STATUS_INVALID_SLIDING_WINDOW,
                "`sliding_window` must be 0 (none) or positive, got %lld",
                static_cast<long long>(o.sliding_window));
  }
  return GQA_STATUS_OK;
}

gqa_status ValidateLogitOptions(float softcap, const float* alibi_slopes,
                                const float* sinks, int64_t heads) {
  if (!(softcap >= 0.0f) || isinf(softcap)) {
    return Fail(GQA_STATUS_INVALID_ARGUMENT,
                "`softcap` must be 0 (off) or finite and > 0, got %g",
                static_cast<double>(softcap));
  }
  const struct {
    const char* name;
    const float* values;
  } vectors[] = {{"alibi_slopes", alibi_slopes}, {"sinks", sinks}};
  for (const auto& v : vectors) {
    for (int64_t u = 0; v.values != nullptr && u < heads; ++u) {
      if (!isfinite(v.values[u])) {
        return Fail(GQA_STATUS_INVALID_ARGUMENT,
                    "`%s[%lld]` must be finite, got %g", v.name,
                    static_cast<long long>(u),
                    static_cast<double>(v.values[u]));
      }
    }
  }
  return GQA_STATUS_OK;
}

float ResolveScale(float scale, int64_t head_dim) {
  return scale > 0.0f
             ? scale
             : static_cast<float>(1.0 / sqrt(static_cast<double>(head_dim)));
}

bool UniformFullyMasked(int32_t policy, bool probabilities_observed) {
  switch (policy) {
    case GQA_FULLY_MASKED_ZERO:
      return false;
    case GQA_FULLY_MASKED_UNIFORM:
      return true;
    default:
      return !probabilities_observed;
  }
}

gqa_status CheckRingWindow(int64_t capacity, int64_t window, int64_t q_len) {
  if (RingWindowFits(window, q_len, capacity)) return GQA_STATUS_OK;
  return Fail(GQA_STATUS_INVALID_ARGUMENT,
              "a ring cache of %lld slots needs a sliding window W with "
              "W + T - 1 <= %lld (W = %lld, T = %lld)",
              static_cast<long long>(capacity),
              static_cast<long long>(capacity), static_cast<long long>(window),
              static_cast<long long>(q_len));
}

int64_t WorkspaceBytes(const WorkspaceNeed& need, int64_t slots) {
  int64_t bytes = 0;
  if (!CheckedMul(need.slot, slots, &bytes) ||
      !CheckedAdd(bytes, need.fixed, &bytes) || !FitsSizeT(bytes)) {
    return -1;
  }
  return bytes;
}

gqa_status WorkspaceSizeFor(const WorkspaceNeed& need, int64_t max_threads,
                            size_t* size_out) {
  if (max_threads <= 0) {
    return Fail(GQA_STATUS_INVALID_SIZE, "max_threads must be > 0, got %lld",
                static_cast<long long>(max_threads));
  }
  const int64_t bytes = WorkspaceBytes(need, max_threads);
  if (bytes < 0) {
    return Fail(GQA_STATUS_SIZE_OVERFLOW,
                "workspace size for %lld threads overflows",
                static_cast<long long>(max_threads));
  }
  *size_out = static_cast<size_t>(bytes);
  return GQA_STATUS_OK;
}

gqa_status FitWorkspace(const WorkspaceNeed& need, const void* workspace,
                        size_t workspace_size, pthreadpool_t pool,
                        int64_t* slots) {
  if (!workspace) return Fail(GQA_STATUS_NULL_POINTER, "workspace is NULL");
  if (reinterpret_cast<uintptr_t>(workspace) % GQA_WORKSPACE_ALIGNMENT != 0) {
    return Fail(GQA_STATUS_WORKSPACE_MISALIGNED,
                "workspace must be aligned to %d bytes",
                GQA_WORKSPACE_ALIGNMENT);
  }
  const int64_t one = WorkspaceBytes(need, 1);
  if (one < 0) return Fail(GQA_STATUS_SIZE_OVERFLOW, "workspace overflows");
  if (workspace_size < static_cast<size_t>(one)) {
    return Fail(GQA_STATUS_WORKSPACE_TOO_SMALL,
                "workspace has %zu bytes, this call needs %lld", workspace_size,
                static_cast<long long>(one));
  }
  // Slots are 64-byte multiples (> 0); the room past one slot, in slots.
  const size_t spare = workspace_size - static_cast<size_t>(one);
  const int64_t room =
      1 + static_cast<int64_t>(spare / static_cast<size_t>(need.slot));
  int64_t n =
      pool ? static_cast<int64_t>(pthreadpool_get_threads_count(pool)) : 1;
  if (n < 1) n = 1;
  *slots = n < room ? n : room;
  return GQA_STATUS_OK;
}

gqa_status ValidateCacheAttendArgs(const CacheShape& c,
                                   const gqa_kv_attend_params* a,
                                   bool need_pointers) {
  if (!a) return Fail(GQA_STATUS_NULL_POINTER, "params is NULL");
  if (a->q_len <= 0 || a->q_heads <= 0) {
    return Fail(GQA_STATUS_INVALID_SIZE,
                "q_len and q_heads must be > 0 (got %lld, %lld)",
                static_cast<long long>(a->q_len),
                static_cast<long long>(a->q_heads));
  }
  if (a->q_heads % c.kv_heads != 0) {
    return Fail(
        GQA_STATUS_HEADS_NOT_DIVISIBLE,
        "q_heads (%lld) must be a multiple of the cache's kv_heads (%lld)",
        static_cast<long long>(a->q_heads), static_cast<long long>(c.kv_heads));
  }
  if (need_pointers && (!a->q || !a->out)) {
    return Fail(GQA_STATUS_NULL_POINTER, "`%s` is NULL", !a->q ? "q" : "out");
  }
  CoreOptions options;
  options.q_dtype = a->q_dtype;
  options.out_dtype = a->out_dtype;
  options.fully_masked_policy = a->fully_masked_policy;
  options.scale = a->scale;
  options.kv_dtype = c.dtype;
  options.sliding_window = a->sliding_window;
  gqa_status s = ValidateOptions(options);
  if (s != GQA_STATUS_OK) return s;
  if ((s = ValidateLogitOptions(
           a->softcap, need_pointers ? a->alibi_slopes : nullptr,
           need_pointers ? a->sinks : nullptr, a->q_heads)) != GQA_STATUS_OK) {
    return s;
  }
  if (a->q_len > kMaxPosition) {
    return Fail(GQA_STATUS_SIZE_OVERFLOW, "q_len must be <= 2^24, got %lld",
                static_cast<long long>(a->q_len));
  }
  if (c.ring) {
    const gqa_status r =
        CheckRingWindow(c.capacity, a->sliding_window, a->q_len);
    if (r != GQA_STATUS_OK) return r;
  }
  const int64_t Dv = c.value_dim > 0 ? c.value_dim : c.head_dim;
  int64_t n = 0, out_elems = 0;
  if (!CheckedProduct({c.batch, a->q_len, a->q_heads, c.head_dim}, kMaxElements,
                      &n) ||
      !CheckedProduct({c.batch, a->q_len, a->q_heads, Dv}, kMaxElements,
                      &out_elems) ||
      !CheckedProduct({c.batch, a->q_heads, a->q_len, c.capacity},
                      INT64_MAX >> 3, &n) ||
      !CheckedProduct({c.batch, a->q_len, a->q_len}, kMaxElements, &n)) {
    return Fail(GQA_STATUS_SIZE_OVERFLOW, "query sizes overflow");
  }
  if (need_pointers) {
    const ByteRange out = RangeOf(a->out, out_elems, DtypeBytes(a->out_dtype));
    if (Overlap(out, RangeOf(a->alibi_slopes, a->q_heads, 4)) ||
        Overlap(out, RangeOf(a->sinks, a->q_heads, 4)) ||
        Overlap(out, RangeOf(a->tree_mask, c.batch * a->q_len * a->q_len, 1))) {
      return Fail(GQA_STATUS_INVALID_ARGUMENT,
                  "`out` overlaps alibi_slopes, sinks or tree_mask (outputs "
                  "must not alias inputs)");
    }
  }
  return GQA_STATUS_OK;
}

gqa_status CachedQueriesFit(const int64_t* lengths, int64_t batch,
                            int64_t q_len) {
  for (int64_t b = 0; b < batch; ++b) {
    if (lengths[b] < q_len) {
      return Fail(
          GQA_STATUS_INVALID_ARGUMENT,
          "batch %lld has %lld cached tokens, fewer than the %lld queries "
          "(append the new tokens first)",
          static_cast<long long>(b), static_cast<long long>(lengths[b]),
          static_cast<long long>(q_len));
    }
  }
  return GQA_STATUS_OK;
}

}  // namespace gqa
