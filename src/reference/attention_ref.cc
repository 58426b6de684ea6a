// Float64 attention oracle (see attention_ref.h): one row at a time, the
// logits of every key, a two-pass softmax over the allowed ones, then p.V.
#include "src/reference/attention_ref.h"

#include <math.h>
#include <stdlib.h>

#include "src/attention_core.h"  // DropoutKeep: the seeded draw's definition

namespace gqa {
namespace reference {

int64_t RefKeyPosition(const AttentionCall& c, int64_t b, int64_t j) {
  if (c.ring_capacity == 0) return j;
  const int64_t cap = c.ring_capacity;
  const int64_t last = c.key_lengths[b] - 1;
  return last - ((last - j) % cap + cap) % cap;
}

AttentionResult Attention(const AttentionCall& c) {
  const int64_t B = c.batch, T = c.q_len, S = c.kv_len;
  const int64_t Hq = c.q_heads, Hkv = c.kv_heads, D = c.head_dim;
  const int64_t Dv = c.value_dim > 0 ? c.value_dim : D;
  const int64_t group = Hq / Hkv;
  AttentionResult res;
  res.out.assign(static_cast<size_t>(B * T * Hq * Dv), 0.0);
  if (c.want_scores)
    res.scores.assign(static_cast<size_t>(B * Hq * T * S), 0.0);

  auto qpos_of = [&](int64_t b, int64_t t) {
    return (c.position_offsets.empty() ? c.position_offset
                                       : c.position_offsets[b]) +
           t;
  };
  // Whether query (b, u, t) may see key slot s.
  auto allowed = [&](int64_t b, int64_t u, int64_t t, int64_t s) {
    if (!c.key_lengths.empty() && s >= c.key_lengths[b]) return false;
    const int64_t qpos = qpos_of(b, t);
    const int64_t kpos = RefKeyPosition(c, b, s);
    const bool draft = !c.tree_mask.empty() && kpos >= qpos_of(b, 0);
    if (draft && !c.tree_mask[(b * T + t) * T + (kpos - qpos_of(b, 0))])
      return false;
    if (c.causal && !draft && kpos > qpos) return false;
    if (c.sliding_window > 0 && llabs(qpos - kpos) >= c.sliding_window)
      return false;
    if (!c.query_mask.empty() && !c.query_mask[b * T + t]) return false;
    for (const std::vector<uint8_t>& m : c.key_masks) {
      if (!m[b * S + s]) return false;
    }
    if (!c.mask.empty() && !c.mask[((b * Hq + u) * T + t) * S + s])
      return false;
    return true;
  };
  const bool dropout = c.apply_dropout && c.dropout_rate > 0.0;

  std::vector<double> probs(static_cast<size_t>(S));
  std::vector<char> ok(static_cast<size_t>(S));
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t u = 0; u < Hq; ++u) {
      const int64_t g = u / group;
      for (int64_t t = 0; t < T; ++t) {
        const double* q = &c.q[((b * T + t) * Hq + u) * D];
        double mx = -INFINITY;
        bool any = false;
        for (int64_t s = 0; s < S; ++s) {
          ok[s] = allowed(b, u, t, s);
          if (!ok[s]) continue;
          const double* k = &c.k[((b * S + s) * Hkv + g) * D];
          double dot = 0.0;
          for (int64_t d = 0; d < D; ++d) dot += q[d] * k[d];
          double x = dot * c.scale;
          if (c.softcap > 0.0) x = c.softcap * tanh(x / c.softcap);
          if (!c.alibi_slopes.empty()) {
            x -= c.alibi_slopes[u] *
                 static_cast<double>(
                     llabs(qpos_of(b, t) - RefKeyPosition(c, b, s)));
          }
          if (!c.bias.empty()) {
            const double bias = c.bias[((b * Hq + u) * T + t) * S + s];
            if (bias == -INFINITY) {
              ok[s] = 0;
              continue;
            }
            x += bias;
          }
          probs[s] = x;
          any = true;
          mx = fmax(mx, probs[s]);
        }
        // A sink: one more logit, no value; the row is never "fully masked".
        const bool sink = !c.sinks.empty();
        if (sink) mx = fmax(mx, c.sinks[u]);
        double sum = sink ? exp(c.sinks[u] - mx) : 0.0;
        for (int64_t s = 0; s < S; ++s) {
          if (ok[s]) sum += (probs[s] = exp(probs[s] - mx));
        }
        // The uniform policy's keys: every slot, or a cache's held ones.
        auto uniform_key = [&](int64_t s) {
          if (c.tree_mask.empty() || c.key_lengths.empty()) return true;
          const int64_t floor = c.held_from.empty() ? 0 : c.held_from[b];
          return s < c.key_lengths[b] && RefKeyPosition(c, b, s) >= floor;
        };
        double uniform_keys = 0.0;
        for (int64_t s = 0; s < S; ++s) uniform_keys += uniform_key(s);
        for (int64_t s = 0; s < S; ++s) {
          if (any || sink) {
            probs[s] = ok[s] ? probs[s] / sum : 0.0;
          } else {
            probs[s] = c.fully_masked_uniform && uniform_key(s)
                           ? 1.0 / uniform_keys
                           : 0.0;
          }
        }
        const int64_t row = ((b * Hq + u) * T + t) * S;  // [B, Hq, T, S]
        if (c.want_scores) {
          for (int64_t s = 0; s < S; ++s) res.scores[row + s] = probs[s];
        }
        double* out = &res.out[((b * T + t) * Hq + u) * Dv];
        for (int64_t s = 0; s < S; ++s) {
          double p = probs[s];
          if (dropout) {
            if (c.dropout_rate >= 1.0) {
              p = 0.0;
            } else {
              const bool keep =
                  c.keep_mask.empty()
                      ? DropoutKeep(c.seed, static_cast<uint64_t>(row + s),
                                    static_cast<float>(c.dropout_rate))
                      : c.keep_mask[row + s] != 0;
              p = keep ? p / (1.0 - c.dropout_rate) : 0.0;
            }
          }
          if (p == 0.0) continue;  // 0 * a non-finite v is not read
          const double* v = &c.v[((b * S + s) * Hkv + g) * Dv];
          for (int64_t d = 0; d < Dv; ++d) out[d] += p * v[d];
        }
      }
    }
  }
  return res;
}

}  // namespace reference
}  // namespace gqa
