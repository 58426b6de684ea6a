// Status names and the per-thread message of the last failure.
#include "src/status.h"

#include <stdarg.h>
#include <stdio.h>

namespace gqa {
namespace {
thread_local char g_last_error[512] = "";
}  // namespace

gqa_status Fail(gqa_status status, const char* format, ...) {
  va_list args;
  va_start(args, format);
  vsnprintf(g_last_error, sizeof(g_last_error), format, args);
  va_end(args);
  return status;
}

}  // namespace gqa

extern "C" {

const char* gqa_last_error_message(void) { return gqa::g_last_error; }

const char* gqa_status_name(gqa_status status) {
  switch (status) {
    case GQA_STATUS_OK:
      return "GQA_STATUS_OK";
    case GQA_STATUS_NULL_POINTER:
      return "GQA_STATUS_NULL_POINTER";
    case GQA_STATUS_INVALID_SIZE:
      return "GQA_STATUS_INVALID_SIZE";
    case GQA_STATUS_SIZE_OVERFLOW:
      return "GQA_STATUS_SIZE_OVERFLOW";
    case GQA_STATUS_HEADS_NOT_DIVISIBLE:
      return "GQA_STATUS_HEADS_NOT_DIVISIBLE";
    case GQA_STATUS_INVALID_SLIDING_WINDOW:
      return "GQA_STATUS_INVALID_SLIDING_WINDOW";
    case GQA_STATUS_INVALID_DROPOUT:
      return "GQA_STATUS_INVALID_DROPOUT";
    case GQA_STATUS_INVALID_ENUM:
      return "GQA_STATUS_INVALID_ENUM";
    case GQA_STATUS_SHAPE_MISMATCH:
      return "GQA_STATUS_SHAPE_MISMATCH";
    case GQA_STATUS_INVALID_MASK_RANK:
      return "GQA_STATUS_INVALID_MASK_RANK";
    case GQA_STATUS_MASK_NOT_BROADCASTABLE:
      return "GQA_STATUS_MASK_NOT_BROADCASTABLE";
    case GQA_STATUS_WORKSPACE_TOO_SMALL:
      return "GQA_STATUS_WORKSPACE_TOO_SMALL";
    case GQA_STATUS_WORKSPACE_MISALIGNED:
      return "GQA_STATUS_WORKSPACE_MISALIGNED";
    case GQA_STATUS_UNSUPPORTED_HARDWARE:
      return "GQA_STATUS_UNSUPPORTED_HARDWARE";
    case GQA_STATUS_OUT_OF_MEMORY:
      return "GQA_STATUS_OUT_OF_MEMORY";
    case GQA_STATUS_BACKEND_FAILURE:
      return "GQA_STATUS_BACKEND_FAILURE";
    case GQA_STATUS_MISSING_WEIGHT:
      return "GQA_STATUS_MISSING_WEIGHT";
    case GQA_STATUS_INVALID_ARGUMENT:
      return "GQA_STATUS_INVALID_ARGUMENT";
    case GQA_STATUS_CACHE_OVERFLOW:
      return "GQA_STATUS_CACHE_OVERFLOW";
    case GQA_STATUS_BLOCK_MISSING:
      return "GQA_STATUS_BLOCK_MISSING";
  }
  return "GQA_STATUS_UNKNOWN";
}

}  // extern "C"

namespace gqa {

bool ViewIsInjective(const int64_t extents[3], const int64_t strides[3],
                     int64_t inner) {
  int order[3] = {0, 1, 2};
  for (int i = 0; i < 3; ++i) {
    for (int j = i + 1; j < 3; ++j) {
      if (strides[order[j]] < strides[order[i]]) {
        const int t = order[i];
        order[i] = order[j];
        order[j] = t;
      }
    }
  }
  int64_t span = inner;  // elements covered by the smaller axes
  for (int i = 0; i < 3; ++i) {
    const int a = order[i];
    if (extents[a] <= 1) continue;
    if (strides[a] < span) return false;
    int64_t more = 0;
    if (!CheckedMul(extents[a] - 1, strides[a], &more) ||
        !CheckedAdd(span, more, &span)) {
      return false;
    }
  }
  return true;
}

}  // namespace gqa
