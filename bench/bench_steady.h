// gqa-bench's steady-clock warm-up and throttle figures (issue 14): phones
// ramp their clocks up under load and throttle them down when hot, so a
// case first runs until its last kSteadyReps times agree within
// kSteadyTolerance (at most kSteadyLimitS), and its measured reps are then
// checked for a slowdown from the first to the last.
#ifndef GQA_BENCH_BENCH_STEADY_H_
#define GQA_BENCH_BENCH_STEADY_H_

#include <stdio.h>

#include <algorithm>
#include <vector>

#include "platforms/machine_peak.h"

namespace gqa {

constexpr int kSteadyReps = 3;              // consecutive reps that agree
constexpr double kSteadyTolerance = 0.02;   // (max - min) / min of those
constexpr double kSteadyLimitS = 2.0;       // give up waiting after this
constexpr double kThrottleSlowdown = 0.05;  // last vs first: "throttling?"

struct Steady {
  int warmup_reps = 0;
  double warmup_s = 0;
  bool warmup_steady = false;        // false: the time limit ended the warm-up
  double first_ms = 0, last_ms = 0;  // first and last measured reps
  double spread = 0;                 // (max - min) / median of the reps
  bool throttling = false;           // last reps > 5% slower than first
};

// Runs run() (one repetition) until steady; fills the warm-up figures.
template <class Run>
void WarmUpUntilSteady(const Run& run, Steady* s) {
  std::vector<double> t;
  const double start = NowSeconds();
  while (true) {
    const double t0 = NowSeconds();
    run();
    t.push_back(NowSeconds() - t0);
    if (t.size() >= kSteadyReps) {
      const auto last = t.end() - kSteadyReps;
      const double lo = *std::min_element(last, t.end());
      const double hi = *std::max_element(last, t.end());
      if (hi - lo <= kSteadyTolerance * lo) s->warmup_steady = true;
    }
    if (s->warmup_steady || NowSeconds() - start > kSteadyLimitS) break;
  }
  s->warmup_reps = static_cast<int>(t.size());
  s->warmup_s = NowSeconds() - start;
}

// The throttle figures of the measured rep times (seconds, in run order):
// the first and last quarter's best (at least one rep each) are compared.
inline void ThrottleFigures(const std::vector<double>& times, Steady* s) {
  if (times.empty()) return;
  std::vector<double> sorted = times;
  std::sort(sorted.begin(), sorted.end());
  const double median = sorted[sorted.size() / 2];
  s->first_ms = times.front() * 1e3;
  s->last_ms = times.back() * 1e3;
  s->spread = (sorted.back() - sorted.front()) / median;
  const size_t q = std::max<size_t>(1, times.size() / 4);
  const double first = *std::min_element(times.begin(), times.begin() + q);
  const double last = *std::min_element(times.end() - q, times.end());
  s->throttling = times.size() >= 2 && last > (1 + kThrottleSlowdown) * first;
}

// The figures as one indented line under the case's row.
inline void PrintSteady(const Steady& s) {
  printf(
      "       warm-up %d reps %.2f s%s; first %.3f last %.3f ms, spread "
      "%.1f%%%s\n",
      s.warmup_reps, s.warmup_s, s.warmup_steady ? "" : " (not steady)",
      s.first_ms, s.last_ms, 100 * s.spread,
      s.throttling ? "  throttling?" : "");
}

}  // namespace gqa

#endif  // GQA_BENCH_BENCH_STEADY_H_
