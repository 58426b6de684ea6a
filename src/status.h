// Error reporting (a status code plus a formatted message kept per thread)
// and the one set of checked-arithmetic helpers and limits that every size,
// position and index computed from a caller's numbers goes through.
#ifndef GQA_SRC_STATUS_H_
#define GQA_SRC_STATUS_H_

#include <stddef.h>
#include <stdint.h>

#include <initializer_list>

#include "gqa/gqa.h"

namespace gqa {

// Records a message for gqa_last_error_message() and returns `status`.
// Touches thread-local storage only on failure (success paths stay free of
// any TLS setup that could allocate in a dlopen'ed library).
gqa_status Fail(gqa_status status, const char* format, ...)
    __attribute__((format(printf, 2, 3)));

// Positions (query and key, cached lengths) stay below 2^24: the kernels
// compare them as f32, exact up to 2^24.
constexpr int64_t kMaxPosition = int64_t{1} << 24;
// Elements of any one tensor or weight (q, k, v, out, a weight matrix):
// 2^48 is far above any real buffer, and keeps every derived byte count
// (plans, workspaces, packed weights: small multiples of these) far from
// int64 overflow.
constexpr int64_t kMaxElements = int64_t{1} << 48;

// a * b into *out; false on overflow or negative operands.
inline bool CheckedMul(int64_t a, int64_t b, int64_t* out) {
  if (a < 0 || b < 0) return false;
  return !__builtin_mul_overflow(a, b, out);
}
inline bool CheckedAdd(int64_t a, int64_t b, int64_t* out) {
  if (a < 0 || b < 0) return false;
  return !__builtin_add_overflow(a, b, out);
}
// The product of `factors` into *out; false on overflow, a negative factor,
// or a product above `limit`.
inline bool CheckedProduct(std::initializer_list<int64_t> factors,
                           int64_t limit, int64_t* out) {
  int64_t n = 1;
  for (int64_t f : factors) {
    if (!CheckedMul(n, f, &n)) return false;
  }
  if (n > limit) return false;
  *out = n;
  return true;
}
// A byte count that a size_t holds with room to spare (32-bit targets too).
inline bool FitsSizeT(int64_t bytes) {
  return bytes >= 0 && static_cast<uint64_t>(bytes) <= SIZE_MAX / 2;
}
// x rounded up to a multiple of m (m > 0) into *out; false on overflow.
inline bool CheckedRoundUp(int64_t x, int64_t m, int64_t* out) {
  int64_t t = 0;
  if (!CheckedAdd(x, m - 1, &t)) return false;
  *out = t / m * m;
  return true;
}

// A sliding window at least as wide as every distance between positions
// (all < kMaxPosition) masks nothing: it is the same as no window (0), and
// is stored as 0 so that no kernel adds it to a position.
inline int64_t EffectiveWindow(int64_t window) {
  return window >= kMaxPosition ? 0 : window;
}
// The ring rule W + T - 1 <= capacity, W > 0, without overflow.
inline bool RingWindowFits(int64_t window, int64_t q_len, int64_t capacity) {
  return window > 0 && q_len > 0 && window <= capacity &&
         q_len - 1 <= capacity - window;
}

// The bytes [begin, end) a strided view can touch. Empty when begin is null.
struct ByteRange {
  uintptr_t begin = 0, end = 0;
};
// elements: one past the largest element offset the view reaches.
inline ByteRange RangeOf(const void* base, int64_t elements, int64_t elem) {
  ByteRange r;
  if (!base) return r;
  r.begin = reinterpret_cast<uintptr_t>(base);
  r.end =
      r.begin + static_cast<uintptr_t>(elements) * static_cast<uintptr_t>(elem);
  return r;
}
inline bool Overlap(const ByteRange& a, const ByteRange& b) {
  return a.begin < a.end && b.begin < b.end && a.begin < b.end &&
         b.begin < a.end;
}
// True when a [n0, n1, n2, inner] view with strides (s0, s1, s2, 1) maps
// distinct indices to distinct elements (sufficient test: with the axes
// sorted by stride, each stride clears the span of the smaller ones).
bool ViewIsInjective(const int64_t extents[3], const int64_t strides[3],
                     int64_t inner);

}  // namespace gqa

#endif  // GQA_SRC_STATUS_H_
