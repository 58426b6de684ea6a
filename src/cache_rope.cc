// RoPE as a cache option (src/cache_rope.h): validation of the params and
// positions, and the queries' staging pass of an attend.
#include "src/cache_rope.h"

#include <string.h>

#include "src/elementwise.h"
#include "src/status.h"

namespace gqa {

gqa_status ValidateCacheRope(const gqa_rope_params* params,
                             const int64_t* positions, int64_t batch,
                             int64_t tokens, const int64_t* counts,
                             int64_t head_dim, bool read_positions,
                             const char* what, CacheRope* out) {
  out->on = params != nullptr;
  out->positions = positions;
  if (!params) {
    if (positions) {
      return Fail(GQA_STATUS_INVALID_ARGUMENT,
                  "%s positions are given without %s params", what, what);
    }
    return GQA_STATUS_OK;
  }
  const gqa_status s = PlanRope(*params, head_dim, &out->plan);
  if (s != GQA_STATUS_OK) return s;
  if (!positions || !read_positions) return GQA_STATUS_OK;
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t n = counts ? counts[b] : tokens;
    for (int64_t t = 0; t < n; ++t) {
      const int64_t p = positions[b * tokens + t];
      if (p < 0 || p >= kMaxPosition) {
        return Fail(GQA_STATUS_INVALID_ARGUMENT,
                    "%s positions[%lld][%lld] = %lld is outside [0, 2^24)",
                    what, static_cast<long long>(b), static_cast<long long>(t),
                    static_cast<long long>(p));
      }
    }
  }
  return GQA_STATUS_OK;
}

void StageRopeQueries(const CacheRope& r, const int64_t* lengths, int64_t batch,
                      int64_t T, int64_t q_heads, const void* q, bool q_f16,
                      int64_t q_token_stride, float* dst) {
  const int64_t D = r.plan.head_dim;
  const int64_t qs = q_token_stride > 0 ? q_token_stride : q_heads * D;
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t t = 0; t < T; ++t) {
      float* rows = dst + (b * T + t) * q_heads * D;
      const int64_t at = (b * T + t) * qs;
      if (q_f16) {
        for (int64_t u = 0; u < q_heads; ++u) {
          ConvertF16ToF32(static_cast<const uint16_t*>(q) + at + u * D,
                          rows + u * D, static_cast<size_t>(D));
        }
      } else {
        for (int64_t u = 0; u < q_heads; ++u) {
          memcpy(rows + u * D, static_cast<const float*>(q) + at + u * D,
                 static_cast<size_t>(D) * 4);
        }
      }
      RopeRowsF32(r.plan, RopePositionOf(r, b, T, t, lengths[b] - T), rows,
                  q_heads, D);
    }
  }
}

}  // namespace gqa
