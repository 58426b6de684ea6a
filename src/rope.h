// RoPE and RMS norm on rows of f32 (llm-attention-semantics.md 5): a plan
// validated once per head size, then an allocation-free in-place pass over
// the rows of one token. gqa_rope (src/rope.cc) runs on it, and the KV
// cache's append (keys) and attend (queries) will too.
#ifndef GQA_SRC_ROPE_H_
#define GQA_SRC_ROPE_H_

#include <stdint.h>

#include "gqa/gqa.h"
#include "gqa/rope.h"

namespace gqa {

// head_dim <= 4096 (the cache's row limit), so R / 2 <= 2048.
constexpr int64_t kMaxRopeHeadDim = 4096;
constexpr int64_t kMaxRotaryHalf = kMaxRopeHeadDim / 2;

// Validated parameters for one head_dim: data only, copyable, no pointer
// but the caller's norm weight (which must outlive the plan's use).
struct RopePlan {
  int64_t head_dim = 0;    // D
  int64_t rotary_dim = 0;  // R, even, 0 < R <= D
  bool interleaved = false;
  const float* norm_weight = nullptr;  // [D] or null: no norm
  float norm_eps = 0.0f;
  // f_i after scaling, float64, i in [0, R/2): finite and >= 0.
  double inv_freq[kMaxRotaryHalf];
};

// Checks p for rows of head_dim elements (1 <= head_dim <= 4096) and fills
// *plan; on error returns the status (with the message) and leaves *plan
// as it was.
gqa_status PlanRope(const gqa_rope_params& p, int64_t head_dim, RopePlan* plan);

// cos and sin of the R/2 angles of one position, rounded to f32 from their
// float64 values (angle pos * f_i formed in float64 too).
struct RopeAngles {
  float cos[kMaxRotaryHalf];
  float sin[kMaxRotaryHalf];
};
void RopeAnglesAt(const RopePlan& plan, int64_t position, RopeAngles* angles);

// One row of D f32 in place: the norm (if planned), then the rotary.
void RopeRowF32(const RopePlan& plan, const RopeAngles& angles, float* row);

// In place on `heads` rows of D f32 at one position (0 <= position < 2^24,
// the caller's to check), rows `row_stride` floats apart: the angles once,
// then norm and rotary per row. Uses ~16 KB of stack, allocates nothing.
void RopeRowsF32(const RopePlan& plan, int64_t position, float* rows,
                 int64_t heads, int64_t row_stride);

}  // namespace gqa

#endif  // GQA_SRC_ROPE_H_
