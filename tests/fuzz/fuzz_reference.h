// Compact float64 reference of the attention core (gqa_attention and the
// KV cache attend) for the C ABI fuzzer; the layer uses src/reference.
#ifndef GQA_TESTS_FUZZ_FUZZ_REFERENCE_H_
#define GQA_TESTS_FUZZ_FUZZ_REFERENCE_H_

#include <math.h>
#include <stdint.h>

#include <functional>
#include <vector>

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
  out->assign(c.B * c.T * c.Hq * c.D, 0.0);
  scores->assign(c.B * c.Hq * c.T * c.S, 0.0);
  std::vector<double> p(c.S);
  const int64_t group = c.Hq / c.Hkv;
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t u = 0; u < c.Hq; ++u)
      for (int64_t t = 0; t < c.T; ++t) {
        const int64_t g = u / group;
        double mx = -INFINITY;
        bool any = false;
        for (int64_t s = 0; s < c.S; ++s) {
          if (!c.allowed(b, u, t, s)) {
            p[s] = NAN;  // marks "masked"
            continue;
          }
          double x = 0;
          for (int64_t d = 0; d < c.D; ++d)
            x += c.q(b, t, u, d) * c.k(b, s, g, d);
          p[s] = x * c.scale;
          any = true;
          mx = fmax(mx, p[s]);
        }
        double sum = 0;
        for (int64_t s = 0; s < c.S; ++s)
          if (!isnan(p[s])) sum += (p[s] = exp(p[s] - mx));
        for (int64_t s = 0; s < c.S; ++s) {
          double w;
          if (any) {
            w = isnan(p[s]) ? 0.0 : p[s] / sum;
          } else {
            w = c.uniform_when_masked ? 1.0 / c.S : 0.0;
          }
          (*scores)[((b * c.Hq + u) * c.T + t) * c.S + s] = w;
          if (w == 0.0) continue;
          for (int64_t d = 0; d < c.D; ++d)
            (*out)[((b * c.T + t) * c.Hq + u) * c.D + d] += w * c.v(b, s, g, d);
        }
      }
}

}  // namespace gqa_fuzz

#endif  // GQA_TESTS_FUZZ_FUZZ_REFERENCE_H_
