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

}  // namespace gqa
