// Error reporting: a status code plus a formatted message kept per thread.
#ifndef GQA_SRC_STATUS_H_
#define GQA_SRC_STATUS_H_

#include "gqa/gqa.h"

namespace gqa {

// Records a message for gqa_last_error_message() and returns `status`.
// Touches thread-local storage only on failure (success paths stay free of
// any TLS setup that could allocate in a dlopen'ed library).
gqa_status Fail(gqa_status status, const char* format, ...)
    __attribute__((format(printf, 2, 3)));

// a * b into *out; false on overflow or negative operands.
inline bool CheckedMul(int64_t a, int64_t b, int64_t* out) {
  if (a < 0 || b < 0) return false;
  return !__builtin_mul_overflow(a, b, out);
}
inline bool CheckedAdd(int64_t a, int64_t b, int64_t* out) {
  if (a < 0 || b < 0) return false;
  return !__builtin_add_overflow(a, b, out);
}

}  // namespace gqa

#endif  // GQA_SRC_STATUS_H_
