// RoPE plan and row pass (src/rope.h): the frequencies and the per-token
// angles in float64, the norm and the rotations in f32.
//
// Why float64 for the angles: a = pos * f_i reaches 2^24 rad; in f32 its
// rounding alone is up to pos * 2^-24 rad (and f32(f_i) adds as much), so
// at pos ~ 2^17 the rotated values would be off by ~1e-2 relative. In
// float64 the product is off by < 2^24 * 2^-53 rad ~ 2e-9, and libm's cos and
// sin reduce that angle mod 2 pi exactly; the results, rounded once to f32,
// are the only error the angles add (2^-24 relative). They cost R/2 cos/sin
// pairs per token, shared by all heads of the token: small beside the
// attention that follows, which reads every cached row per query.
//
// The RMS norm sums the squares in float64 (no overflow for f32 rows, no
// cancellation to worry about), then scales each element in float64 before
// the one rounding to f32: a row of tiny (subnormal) values then normalises
// to the same result as the reference instead of overflowing 1/rms in f32.
#include "src/rope.h"

#include <math.h>
#include <string.h>

#include "src/status.h"

namespace gqa {
namespace {

constexpr double kTwoPi = 6.283185307179586476925286766559;

bool FiniteAbove(double x, double low) { return isfinite(x) && x > low; }

// The llama3 band rule (spec 5) on one unscaled frequency f.
double Llama3Frequency(double f, double factor, double lf, double hf,
                       double L) {
  const double wavelength = kTwoPi / f;  // inf for f == 0: the low band
  if (wavelength < L / hf) return f;
  if (wavelength > L / lf) return f / factor;
  const double g = (L / wavelength - lf) / (hf - lf);
  return (1.0 - g) * f / factor + g * f;
}

gqa_status CheckScaling(const gqa_rope_params& p) {
  if (p.scaling == GQA_ROPE_SCALING_NONE) return GQA_STATUS_OK;
  if (p.scaling != GQA_ROPE_SCALING_LINEAR &&
      p.scaling != GQA_ROPE_SCALING_LLAMA3) {
    return Fail(GQA_STATUS_INVALID_ENUM,
                "rope scaling %d is not GQA_ROPE_SCALING_NONE, LINEAR or "
                "LLAMA3",
                p.scaling);
  }
  if (!FiniteAbove(p.factor, 0.0)) {
    return Fail(GQA_STATUS_INVALID_ARGUMENT,
                "rope scaling factor must be finite and > 0, got %g", p.factor);
  }
  // Every scaled frequency is at most max(1, 1 / F) (theta > 1 makes the
  // unscaled ones <= 1, and llama3 blends f and f / F): its angles at any
  // position below 2^24 must stay finite.
  if (!isfinite(static_cast<double>(kMaxPosition) / p.factor)) {
    return Fail(GQA_STATUS_INVALID_ARGUMENT,
                "rope scaling factor %g is too small: its angles overflow",
                p.factor);
  }
  if (p.scaling == GQA_ROPE_SCALING_LLAMA3) {
    const double lf = p.low_freq_factor, hf = p.high_freq_factor;
    const double L = p.original_max_position;
    if (!FiniteAbove(lf, 0.0) || !isfinite(hf) || !(hf > lf) ||
        !FiniteAbove(L, 0.0)) {
      return Fail(GQA_STATUS_INVALID_ARGUMENT,
                  "llama3 rope scaling needs finite 0 < low_freq_factor < "
                  "high_freq_factor and original_max_position > 0, got "
                  "lf=%g hf=%g L=%g",
                  lf, hf, L);
    }
  }
  return GQA_STATUS_OK;
}

}  // namespace

gqa_status PlanRope(const gqa_rope_params& p, int64_t head_dim,
                    RopePlan* plan) {
  if (head_dim <= 0 || head_dim > kMaxRopeHeadDim) {
    return Fail(
        head_dim <= 0 ? GQA_STATUS_INVALID_SIZE : GQA_STATUS_SIZE_OVERFLOW,
        "rope head_dim must be in [1, %lld], got %lld",
        static_cast<long long>(kMaxRopeHeadDim),
        static_cast<long long>(head_dim));
  }
  if (p.style != GQA_ROPE_HALF && p.style != GQA_ROPE_INTERLEAVED) {
    return Fail(GQA_STATUS_INVALID_ENUM,
                "rope style %d is not GQA_ROPE_HALF or GQA_ROPE_INTERLEAVED",
                p.style);
  }
  const int64_t R = p.rotary_dim == 0 ? head_dim : p.rotary_dim;
  if (R <= 0 || R > head_dim || R % 2 != 0) {
    return Fail(GQA_STATUS_INVALID_ARGUMENT,
                "rope rotary_dim must be even, in (0, head_dim = %lld] (or "
                "0 for head_dim), got %lld",
                static_cast<long long>(head_dim),
                static_cast<long long>(p.rotary_dim));
  }
  if (!FiniteAbove(p.theta, 1.0)) {
    return Fail(GQA_STATUS_INVALID_ARGUMENT,
                "rope theta must be finite and > 1, got %g", p.theta);
  }
  gqa_status s = CheckScaling(p);
  if (s != GQA_STATUS_OK) return s;
  if (p.norm_weight && !(isfinite(p.norm_eps) && p.norm_eps >= 0.0f)) {
    return Fail(GQA_STATUS_INVALID_ARGUMENT,
                "rope norm_eps must be finite and >= 0, got %g",
                static_cast<double>(p.norm_eps));
  }

  plan->head_dim = head_dim;
  plan->rotary_dim = R;
  plan->interleaved = p.style == GQA_ROPE_INTERLEAVED;
  plan->norm_weight = p.norm_weight;
  plan->norm_eps = p.norm_weight ? p.norm_eps : 0.0f;
  const int64_t half = R / 2;
  for (int64_t i = 0; i < half; ++i) {
    double f =
        pow(p.theta, -2.0 * static_cast<double>(i) / static_cast<double>(R));
    if (p.scaling == GQA_ROPE_SCALING_LINEAR) {
      f /= p.factor;
    } else if (p.scaling == GQA_ROPE_SCALING_LLAMA3) {
      f = Llama3Frequency(f, p.factor, p.low_freq_factor, p.high_freq_factor,
                          p.original_max_position);
    }
    plan->inv_freq[i] = f;
  }
  return GQA_STATUS_OK;
}

void RopeAnglesAt(const RopePlan& plan, int64_t position, RopeAngles* angles) {
  const double pos = static_cast<double>(position);
  const int64_t half = plan.rotary_dim / 2;
  for (int64_t i = 0; i < half; ++i) {
    const double a = pos * plan.inv_freq[i];
    angles->cos[i] = static_cast<float>(cos(a));
    angles->sin[i] = static_cast<float>(sin(a));
  }
}

void RopeRowF32(const RopePlan& plan, const RopeAngles& angles, float* row) {
  const int64_t D = plan.head_dim;
  if (plan.norm_weight) {
    // Four partial sums merged in a fixed order: four independent add
    // chains instead of one (the same result on every call).
    double part[4] = {0.0, 0.0, 0.0, 0.0};
    int64_t i = 0;
    for (; i + 4 <= D; i += 4) {
      for (int j = 0; j < 4; ++j) {
        const double v = row[i + j];
        part[j] += v * v;
      }
    }
    for (; i < D; ++i) {
      const double v = row[i];
      part[0] += v * v;
    }
    const double sum = (part[0] + part[1]) + (part[2] + part[3]);
    const double inv_rms = 1.0 / sqrt(sum / static_cast<double>(D) +
                                      static_cast<double>(plan.norm_eps));
    for (i = 0; i < D; ++i) {
      row[i] = static_cast<float>(static_cast<double>(row[i]) * inv_rms) *
               plan.norm_weight[i];
    }
  }
  const int64_t half = plan.rotary_dim / 2;
  // Pair i is (row[i * step], row[i * step + other]).
  const int64_t step = plan.interleaved ? 2 : 1;
  const int64_t other = plan.interleaved ? 1 : half;
  for (int64_t i = 0; i < half; ++i) {
    float* a = row + i * step;
    float* b = a + other;
    const float x = *a, y = *b, c = angles.cos[i], s = angles.sin[i];
    *a = x * c - y * s;
    *b = x * s + y * c;
  }
}

void RopeRowsF32(const RopePlan& plan, int64_t position, float* rows,
                 int64_t heads, int64_t row_stride) {
  RopeAngles angles;
  RopeAnglesAt(plan, position, &angles);
  for (int64_t h = 0; h < heads; ++h) {
    RopeRowF32(plan, angles, rows + h * row_stride);
  }
}

}  // namespace gqa
