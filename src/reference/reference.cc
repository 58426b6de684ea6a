// Scalar float64 reference of the layer (see reference.h).
#include "src/reference/reference.h"

#include <math.h>

#include "src/attention_core.h"  // DropoutKeep: the seeded draw's definition

namespace gqa {
namespace reference {
namespace {

// y[r, n] = sum_m x[r, m] * w[m, n] (+ b[n]); x [rows, in], w [in, out].
std::vector<double> Dense(const std::vector<double>& x, int64_t rows,
                          int64_t in, const std::vector<double>& w,
                          const std::vector<double>& b, int64_t out) {
  std::vector<double> y(static_cast<size_t>(rows * out), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t n = 0; n < out; ++n) {
      double s = b.empty() ? 0.0 : b[n];
      for (int64_t m = 0; m < in; ++m) s += x[r * in + m] * w[m * out + n];
      y[r * out + n] = s;
    }
  }
  return y;
}

}  // namespace

Result Forward(const Config& c, const Weights& w, const Call& call) {
  const int64_t B = call.batch, T = call.q_len, S = call.kv_len;
  const int64_t D = c.head_dim, Hq = c.q_heads, Hkv = c.kv_heads;
  const int64_t r = Hq / Hkv;
  const std::vector<double>& key = call.key.empty() ? call.value : call.key;
  const int64_t Fk = call.key.empty() ? c.v_features : c.k_features;

  const std::vector<double> q = Dense(call.query, B * T, c.q_features,
                                      w.query_kernel, w.query_bias, Hq * D);
  const std::vector<double> k =
      Dense(key, B * S, Fk, w.key_kernel, w.key_bias, Hkv * D);
  const std::vector<double> v = Dense(call.value, B * S, c.v_features,
                                      w.value_kernel, w.value_bias, Hkv * D);
  std::vector<double> gate;
  if (c.use_gate) {
    gate = Dense(call.query, B * T, c.q_features, w.gate_kernel, w.gate_bias,
                 Hq * D);
    for (double& g : gate) g = 1.0 / (1.0 + exp(-g));
  }

  const bool zero_policy =
      c.policy == Policy::kZero ||
      (c.policy == Policy::kKeras && (c.dropout > 0.0 || call.want_scores));
  const double scale = 1.0 / sqrt(static_cast<double>(D));
  const bool dropout = call.training && c.dropout > 0.0;

  // Attention mask expanded to 4-D dims (size-1 axes inserted at -3).
  int64_t am[4] = {1, 1, 1, 1};
  const size_t rank = call.attention_mask_dims.size();
  if (rank == 2) {
    am[2] = call.attention_mask_dims[0];
    am[3] = call.attention_mask_dims[1];
  } else if (rank == 3) {
    am[0] = call.attention_mask_dims[0];
    am[2] = call.attention_mask_dims[1];
    am[3] = call.attention_mask_dims[2];
  } else if (rank == 4) {
    for (int i = 0; i < 4; ++i) am[i] = call.attention_mask_dims[i];
  }
  auto allowed = [&](int64_t b, int64_t u, int64_t t, int64_t s) {
    if (!call.attention_mask.empty()) {
      const int64_t i0 = am[0] == 1 ? 0 : b, i1 = am[1] == 1 ? 0 : u,
                    i2 = am[2] == 1 ? 0 : t, i3 = am[3] == 1 ? 0 : s;
      if (!call.attention_mask[((i0 * am[1] + i1) * am[2] + i2) * am[3] + i3])
        return false;
    }
    if (!call.query_mask.empty() && !call.query_mask[b * T + t]) return false;
    if (!call.value_mask.empty() && !call.value_mask[b * S + s]) return false;
    if (!call.key_mask.empty() && !call.key_mask[b * S + s]) return false;
    if (call.causal && s > t) return false;
    if (c.sliding_window > 0 && llabs(t - s) >= c.sliding_window) return false;
    return true;
  };

  Result res;
  if (call.want_scores)
    res.scores.assign(static_cast<size_t>(B * Hq * T * S), 0.0);
  std::vector<double> attn(static_cast<size_t>(B * T * Hq * D), 0.0);
  std::vector<double> logits(static_cast<size_t>(S)),
      probs(static_cast<size_t>(S));
  std::vector<char> ok(static_cast<size_t>(S));
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t u = 0; u < Hq; ++u) {
      const int64_t g = u / r;
      for (int64_t t = 0; t < T; ++t) {
        double mx = -INFINITY;
        bool any = false;
        for (int64_t s = 0; s < S; ++s) {
          ok[s] = allowed(b, u, t, s);
          double x = 0.0;
          for (int64_t d = 0; d < D; ++d) {
            x += q[(b * T + t) * Hq * D + u * D + d] * scale *
                 k[(b * S + s) * Hkv * D + g * D + d];
          }
          logits[s] = x;
          if (ok[s]) {
            any = true;
            if (x > mx) mx = x;
          }
        }
        double sum = 0.0;
        for (int64_t s = 0; s < S; ++s) {
          probs[s] = ok[s] ? exp(logits[s] - mx) : 0.0;
          sum += probs[s];
        }
        for (int64_t s = 0; s < S; ++s) {
          if (any) {
            probs[s] /= sum;
          } else {
            probs[s] = zero_policy ? 0.0 : 1.0 / static_cast<double>(S);
          }
        }
        const int64_t row = ((b * Hq + u) * T + t) * S;
        if (call.want_scores) {
          for (int64_t s = 0; s < S; ++s) res.scores[row + s] = probs[s];
        }
        for (int64_t s = 0; s < S; ++s) {
          double p = probs[s];
          if (dropout) {
            if (c.dropout >= 1.0) {
              p = 0.0;
            } else {
              const bool keep =
                  call.keep_mask.empty()
                      ? DropoutKeep(c.seed, static_cast<uint64_t>(row + s),
                                    static_cast<float>(c.dropout))
                      : call.keep_mask[row + s] != 0;
              p = keep ? p / (1.0 - c.dropout) : 0.0;
            }
          }
          if (p == 0.0) continue;
          for (int64_t d = 0; d < D; ++d) {
            attn[(b * T + t) * Hq * D + u * D + d] +=
                p * v[(b * S + s) * Hkv * D + g * D + d];
          }
        }
      }
    }
  }
  if (c.use_gate) {
    for (size_t i = 0; i < attn.size(); ++i) attn[i] *= gate[i];
  }
  res.output =
      Dense(attn, B * T, Hq * D, w.output_kernel, w.output_bias, c.q_features);
  return res;
}

}  // namespace reference
}  // namespace gqa
