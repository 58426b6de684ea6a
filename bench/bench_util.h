// Small helpers shared by gqa-bench's files: random inputs, the median of
// timings, and the machine roofs measured in the run.
#ifndef GQA_BENCH_BENCH_UTIL_H_
#define GQA_BENCH_BENCH_UTIL_H_

#include <stddef.h>
#include <stdint.h>

#include <algorithm>
#include <random>
#include <vector>

#include "platforms/machine_peak.h"

namespace gqa {

inline std::vector<float> RandomFloats(size_t n, uint64_t seed, float lo,
                                       float hi) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

inline std::vector<float> NormalFloats(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = g(rng);
  return v;
}

inline double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// The roofs of a run: the best of its probes (before and after the cases).
struct Roofs {
  int threads = 1;
  double peak_gflops = 0.0;  // FMA peak at the run's thread count
  ReadBandwidth bw;          // read bandwidth at the run's thread count
  ReadBandwidth bw_1t;       // and with one thread
};

}  // namespace gqa

#endif  // GQA_BENCH_BENCH_UTIL_H_
