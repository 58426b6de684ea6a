// The C ABI fuzzer's view of the float64 oracle (reference::Attention in
// src/reference/attention_ref.h) for gqa_attention and the KV cache attend:
// the harness describes its strided, ring and typed storage by callbacks;
// this reads them into the oracle's dense tensors.
#ifndef GQA_TESTS_FUZZ_FUZZ_REFERENCE_H_
#define GQA_TESTS_FUZZ_FUZZ_REFERENCE_H_

#include <math.h>
#include <stdint.h>

#include <functional>
#include <utility>
#include <vector>

#include "src/reference/attention_ref.h"

namespace gqa_fuzz {

// Logical tensors: q [B,T,Hq,D], k/v [B,S,Hkv,D] (read through callbacks so
// that strided, ring and typed storage stay with the caller).
struct CoreRef {
  int64_t B, T, S, Hq, Hkv, D;
  double scale;
  bool uniform_when_masked;  // else zero
  std::function<double(int64_t, int64_t, int64_t, int64_t)> q, k, v;
  std::function<bool(int64_t, int64_t, int64_t, int64_t)> allowed;  // b,u,t,s
};

// out [B,T,Hq,D]; scores [B,Hq,T,S] (probabilities).
// Multiply-adds of a float64 evaluation, B*Hq*T*S*D: above kRefBudget the
// callers skip the value comparison (the call's status and sentinel checks
// still run), so that one input never takes seconds (libFuzzer timeouts).
constexpr double kRefBudget = 1 << 22;
// Multiply-adds of the library call itself: a valid core call can be tiny in
// memory yet huge in work (S = 2^24 keys over k/v rows of stride 0), tens
// of seconds under ASan. Above kRunBudget the harness does not make it.
constexpr double kRunBudget = 1 << 27;
inline double RefWork(const CoreRef& c) {
  return static_cast<double>(c.B) * c.Hq * c.T * c.S * (c.D + 4);
}

inline void RunCoreRef(const CoreRef& c, std::vector<double>* out,
                       std::vector<double>* scores) {
  gqa::reference::AttentionCall a;
  a.batch = c.B, a.q_len = c.T, a.kv_len = c.S;
  a.q_heads = c.Hq, a.kv_heads = c.Hkv, a.head_dim = c.D;
  a.scale = c.scale;
  a.q.resize(static_cast<size_t>(c.B * c.T * c.Hq * c.D));
  a.k.resize(static_cast<size_t>(c.B * c.S * c.Hkv * c.D));
  a.v.resize(a.k.size());
  a.mask.resize(static_cast<size_t>(c.B * c.Hq * c.T * c.S));
  for (int64_t b = 0; b < c.B; ++b) {
    for (int64_t t = 0; t < c.T; ++t)
      for (int64_t h = 0; h < c.Hq; ++h)
        for (int64_t d = 0; d < c.D; ++d)
          a.q[((b * c.T + t) * c.Hq + h) * c.D + d] = c.q(b, t, h, d);
    for (int64_t s = 0; s < c.S; ++s)
      for (int64_t h = 0; h < c.Hkv; ++h)
        for (int64_t d = 0; d < c.D; ++d) {
          a.k[((b * c.S + s) * c.Hkv + h) * c.D + d] = c.k(b, s, h, d);
          a.v[((b * c.S + s) * c.Hkv + h) * c.D + d] = c.v(b, s, h, d);
        }
    for (int64_t u = 0; u < c.Hq; ++u)
      for (int64_t t = 0; t < c.T; ++t)
        for (int64_t s = 0; s < c.S; ++s)
          a.mask[((b * c.Hq + u) * c.T + t) * c.S + s] = c.allowed(b, u, t, s);
  }
  a.fully_masked_uniform = c.uniform_when_masked;
  a.want_scores = true;
  gqa::reference::AttentionResult r = gqa::reference::Attention(a);
  *out = std::move(r.out);
  *scores = std::move(r.scores);
}

}  // namespace gqa_fuzz

#endif  // GQA_TESTS_FUZZ_FUZZ_REFERENCE_H_
