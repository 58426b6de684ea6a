// Float64 RoPE oracle (see rope_ref.h): every step as the spec writes it,
// no shortcut shared with the library.
#include "src/reference/rope_ref.h"

#include <math.h>

namespace gqa {
namespace reference {

std::vector<double> RopeFrequencies(const RopeCall& call) {
  const int64_t R = call.rotary_dim == 0 ? call.head_dim : call.rotary_dim;
  std::vector<double> f(static_cast<size_t>(R / 2));
  const double pi = 3.14159265358979323846;
  for (int64_t i = 0; i < R / 2; ++i) {
    double fi = pow(call.theta, -2.0 * static_cast<double>(i) / R);
    if (call.scaling == "linear") {
      fi = fi / call.factor;
    } else if (call.scaling == "llama3") {
      const double F = call.factor, lf = call.low_freq_factor;
      const double hf = call.high_freq_factor;
      const double L = call.original_max_position;
      const double lam = 2.0 * pi / fi;
      if (lam < L / hf) {
        // high frequencies: unchanged
      } else if (lam > L / lf) {
        fi = fi / F;
      } else {
        const double g = (L / lam - lf) / (hf - lf);
        fi = (1.0 - g) * fi / F + g * fi;
      }
    }
    f[static_cast<size_t>(i)] = fi;
  }
  return f;
}

std::vector<double> Rope(const RopeCall& call) {
  const int64_t D = call.head_dim;
  const int64_t R = call.rotary_dim == 0 ? D : call.rotary_dim;
  const std::vector<double> f = RopeFrequencies(call);
  std::vector<double> y = call.x;
  std::vector<double> row(static_cast<size_t>(D));
  const int64_t rows = call.batch * call.tokens * call.heads;
  for (int64_t r = 0; r < rows; ++r) {
    double* out = y.data() + r * D;
    for (int64_t i = 0; i < D; ++i) row[i] = out[i];
    if (!call.norm_weight.empty()) {
      double ms = 0.0;
      for (int64_t i = 0; i < D; ++i) ms += row[i] * row[i];
      ms /= static_cast<double>(D);
      const double rms = sqrt(ms + call.eps);
      for (int64_t i = 0; i < D; ++i) {
        row[i] = row[i] / rms * call.norm_weight[static_cast<size_t>(i)];
      }
    }
    const double pos = static_cast<double>(
        call.positions[static_cast<size_t>(r / call.heads)]);
    for (int64_t i = 0; i < D; ++i) out[i] = row[i];
    for (int64_t i = 0; i < R / 2; ++i) {
      const int64_t i1 = call.interleaved ? 2 * i : i;
      const int64_t i2 = call.interleaved ? 2 * i + 1 : i + R / 2;
      const double a = pos * f[static_cast<size_t>(i)];
      const double c = cos(a), s = sin(a);
      out[i1] = row[i1] * c - row[i2] * s;
      out[i2] = row[i1] * s + row[i2] * c;
    }
  }
  return y;
}

}  // namespace reference
}  // namespace gqa
