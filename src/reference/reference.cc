// Scalar float64 reference of the layer (see reference.h): projections
// here, the attention step through reference::Attention.
#include "src/reference/reference.h"

#include <math.h>

#include <utility>

#include "src/reference/attention_ref.h"

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

// The Keras attention mask (rank 2..4, size-1 axes broadcast, rank < 4
// inserting its axes at -3) expanded to [B, Hq, T, S].
std::vector<uint8_t> BroadcastMask(const std::vector<uint8_t>& m,
                                   const std::vector<int64_t>& dims, int64_t B,
                                   int64_t Hq, int64_t T, int64_t S) {
  int64_t am[4] = {1, 1, 1, 1};
  if (dims.size() == 2) {
    am[2] = dims[0], am[3] = dims[1];
  } else if (dims.size() == 3) {
    am[0] = dims[0], am[2] = dims[1], am[3] = dims[2];
  } else if (dims.size() == 4) {
    for (int i = 0; i < 4; ++i) am[i] = dims[i];
  }
  std::vector<uint8_t> full(static_cast<size_t>(B * Hq * T * S));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t u = 0; u < Hq; ++u)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t s = 0; s < S; ++s) {
          const int64_t i0 = am[0] == 1 ? 0 : b, i1 = am[1] == 1 ? 0 : u,
                        i2 = am[2] == 1 ? 0 : t, i3 = am[3] == 1 ? 0 : s;
          full[((b * Hq + u) * T + t) * S + s] =
              m[((i0 * am[1] + i1) * am[2] + i2) * am[3] + i3] != 0;
        }
  return full;
}

}  // namespace

Result Forward(const Config& c, const Weights& w, const Call& call) {
  const int64_t B = call.batch, T = call.q_len, S = call.kv_len;
  const int64_t D = c.head_dim, Hq = c.q_heads, Hkv = c.kv_heads;
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

  // The attention step: masks as the core sees them (the attention mask
  // broadcast to [B, Hq, T, S], value and key masks as two key masks).
  AttentionCall a;
  a.batch = B, a.q_len = T, a.kv_len = S;
  a.q_heads = Hq, a.kv_heads = Hkv, a.head_dim = D;
  a.q = q, a.k = k, a.v = v;
  a.scale = 1.0 / sqrt(static_cast<double>(D));
  a.causal = call.causal;
  a.sliding_window = c.sliding_window;
  a.query_mask = call.query_mask;
  if (!call.value_mask.empty()) a.key_masks.push_back(call.value_mask);
  if (!call.key_mask.empty()) a.key_masks.push_back(call.key_mask);
  if (!call.attention_mask.empty()) {
    a.mask = BroadcastMask(call.attention_mask, call.attention_mask_dims, B, Hq,
                           T, S);
  }
  const bool zero_policy =
      c.policy == Policy::kZero ||
      (c.policy == Policy::kKeras && (c.dropout > 0.0 || call.want_scores));
  a.fully_masked_uniform = !zero_policy;
  a.want_scores = call.want_scores;
  a.apply_dropout = call.training && c.dropout > 0.0;
  a.dropout_rate = c.dropout;
  a.keep_mask = call.keep_mask;
  a.seed = c.seed;
  AttentionResult attended = Attention(a);
  std::vector<double>& attn = attended.out;  // [B, T, Hq, D]

  Result res;
  res.scores = std::move(attended.scores);
  if (c.use_gate) {
    for (size_t i = 0; i < attn.size(); ++i) attn[i] *= gate[i];
  }
  res.output =
      Dense(attn, B * T, Hq * D, w.output_kernel, w.output_bias, c.q_features);
  return res;
}

}  // namespace reference
}  // namespace gqa
