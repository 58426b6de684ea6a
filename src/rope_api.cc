// The public RoPE front door (include/gqa/rope.h): validates every argument
// once (sizes, dtypes, the plan, pointers, aliasing, positions) before
// anything is written, then runs the plan token by token.
#include <string.h>

#include "gqa/rope.h"
#include "src/half.h"
#include "src/operator.h"
#include "src/rope.h"
#include "src/status.h"

namespace gqa {
namespace {

gqa_status CheckSizes(int64_t batch, int64_t tokens, int64_t heads,
                      int64_t head_dim, int64_t* elements) {
  const struct {
    const char* name;
    int64_t value;
  } sizes[] = {{"batch", batch},
               {"tokens", tokens},
               {"heads", heads},
               {"head_dim", head_dim}};
  for (const auto& s : sizes) {
    if (s.value <= 0) {
      return Fail(GQA_STATUS_INVALID_SIZE, "rope `%s` must be > 0, got %lld",
                  s.name, static_cast<long long>(s.value));
    }
  }
  if (head_dim > kMaxRopeHeadDim) {
    return Fail(GQA_STATUS_SIZE_OVERFLOW,
                "rope head_dim must be <= %lld, got %lld",
                static_cast<long long>(kMaxRopeHeadDim),
                static_cast<long long>(head_dim));
  }
  if (!CheckedProduct({batch, tokens, heads, head_dim}, kMaxElements,
                      elements)) {
    return Fail(GQA_STATUS_SIZE_OVERFLOW,
                "rope x is past 2^48 elements (B=%lld T=%lld H=%lld D=%lld)",
                static_cast<long long>(batch), static_cast<long long>(tokens),
                static_cast<long long>(heads),
                static_cast<long long>(head_dim));
  }
  return GQA_STATUS_OK;
}

// y may be x itself (same dtype: in place), else must touch none of the
// inputs: a partial overlap would read rows the call already wrote.
gqa_status CheckAliasing(const RopePlan& plan, int64_t elements,
                         int64_t positions_count, const int64_t* positions,
                         const void* x, int32_t x_dtype, const void* y,
                         int32_t y_dtype) {
  const ByteRange out = RangeOf(y, elements, DtypeBytes(y_dtype));
  const bool in_place = x == y && x_dtype == y_dtype;
  if (!in_place && Overlap(out, RangeOf(x, elements, DtypeBytes(x_dtype)))) {
    return Fail(GQA_STATUS_INVALID_ARGUMENT,
                "rope y overlaps x (only y == x with the same dtype runs in "
                "place)");
  }
  if (Overlap(out, RangeOf(positions, positions_count, 8))) {
    return Fail(GQA_STATUS_INVALID_ARGUMENT, "rope y overlaps positions");
  }
  if (Overlap(out, RangeOf(plan.norm_weight, plan.head_dim, 4))) {
    return Fail(GQA_STATUS_INVALID_ARGUMENT, "rope y overlaps norm_weight");
  }
  return GQA_STATUS_OK;
}

gqa_status CheckPositions(const int64_t* positions, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    if (positions[i] < 0 || positions[i] >= kMaxPosition) {
      return Fail(GQA_STATUS_INVALID_ARGUMENT,
                  "rope positions[%lld] = %lld is outside [0, 2^24)",
                  static_cast<long long>(i),
                  static_cast<long long>(positions[i]));
    }
  }
  return GQA_STATUS_OK;
}

void LoadRow(const void* x, bool half, int64_t offset, int64_t n, float* row) {
  if (half) {
    const uint16_t* h = static_cast<const uint16_t*>(x) + offset;
    for (int64_t i = 0; i < n; ++i) row[i] = HalfToFloat(h[i]);
  } else {
    memcpy(row, static_cast<const float*>(x) + offset,
           static_cast<size_t>(n) * sizeof(float));
  }
}

void StoreRow(const float* row, int64_t n, bool half, int64_t offset, void* y) {
  if (half) {
    uint16_t* h = static_cast<uint16_t*>(y) + offset;
    for (int64_t i = 0; i < n; ++i) h[i] = FloatToHalf(row[i]);
  } else {
    memcpy(static_cast<float*>(y) + offset, row,
           static_cast<size_t>(n) * sizeof(float));
  }
}

// x [B*T, H, D] -> y; positions validated, aliasing checked.
void Run(const RopePlan& plan, int64_t rows_of_tokens, int64_t heads,
         const int64_t* positions, const void* x, int32_t x_dtype, void* y,
         int32_t y_dtype) {
  const int64_t D = plan.head_dim, token_elems = heads * D;
  if (x_dtype == GQA_DTYPE_F32 && y_dtype == GQA_DTYPE_F32) {
    // f32 -> f32: the rows are rotated where they land.
    for (int64_t t = 0; t < rows_of_tokens; ++t) {
      float* out = static_cast<float*>(y) + t * token_elems;
      if (x != y) {
        memcpy(out, static_cast<const float*>(x) + t * token_elems,
               static_cast<size_t>(token_elems) * sizeof(float));
      }
      RopeRowsF32(plan, positions[t], out, heads, D);
    }
    return;
  }
  // Any f16 end: each row through an f32 buffer, the angles once a token.
  const bool x_half = x_dtype == GQA_DTYPE_F16;
  const bool y_half = y_dtype == GQA_DTYPE_F16;
  RopeAngles angles;
  float row[kMaxRopeHeadDim];
  for (int64_t t = 0; t < rows_of_tokens; ++t) {
    RopeAnglesAt(plan, positions[t], &angles);
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t offset = t * token_elems + h * D;
      LoadRow(x, x_half, offset, D, row);
      RopeRowF32(plan, angles, row);
      StoreRow(row, D, y_half, offset, y);
    }
  }
}

// gqa_rope: every check before the first write.
gqa_status RopeCall(const gqa_rope_params* params, int64_t batch,
                    int64_t tokens, int64_t heads, int64_t head_dim,
                    const int64_t* positions, const void* x, int32_t x_dtype,
                    void* y, int32_t y_dtype) {
  if (!params) return Fail(GQA_STATUS_NULL_POINTER, "rope params is NULL");
  int64_t elements = 0;
  gqa_status s = CheckSizes(batch, tokens, heads, head_dim, &elements);
  if (s != GQA_STATUS_OK) return s;
  if (!ValidDtype(x_dtype) || !ValidDtype(y_dtype)) {
    return Fail(GQA_STATUS_INVALID_ENUM,
                "rope x_dtype %d / y_dtype %d: each must be GQA_DTYPE_F32 "
                "or GQA_DTYPE_F16",
                x_dtype, y_dtype);
  }
  RopePlan plan;
  s = PlanRope(*params, head_dim, &plan);
  if (s != GQA_STATUS_OK) return s;
  if (!positions || !x || !y) {
    return Fail(GQA_STATUS_NULL_POINTER, "rope `%s` is NULL",
                !positions ? "positions"
                : !x       ? "x"
                           : "y");
  }
  const int64_t token_count = batch * tokens;  // <= elements: no overflow
  s = CheckAliasing(plan, elements, token_count, positions, x, x_dtype, y,
                    y_dtype);
  if (s != GQA_STATUS_OK) return s;
  s = CheckPositions(positions, token_count);
  if (s != GQA_STATUS_OK) return s;
  Run(plan, token_count, heads, positions, x, x_dtype, y, y_dtype);
  return GQA_STATUS_OK;
}

}  // namespace
}  // namespace gqa

extern "C" {

void gqa_rope_params_init(gqa_rope_params* params) {
  if (!params) return;
  *params = gqa_rope_params();
  params->rotary_dim = 0;
  params->style = GQA_ROPE_HALF;
  params->scaling = GQA_ROPE_SCALING_NONE;
  params->theta = 10000.0;
  params->factor = 1.0;
  params->low_freq_factor = 1.0;
  params->high_freq_factor = 4.0;
  params->original_max_position = 8192.0;
  params->norm_weight = nullptr;
  params->norm_eps = 1e-6f;
}

gqa_status gqa_rope(const gqa_rope_params* params, int64_t batch,
                    int64_t tokens, int64_t heads, int64_t head_dim,
                    const int64_t* positions, const void* x, int32_t x_dtype,
                    void* y, int32_t y_dtype) {
  return gqa::RopeCall(params, batch, tokens, heads, head_dim, positions, x,
                       x_dtype, y, y_dtype);
}

}  // extern "C"
