// Measured machine limits for the bench: the FMA peak of one core (f32) and
// the memory read bandwidth, both timed in the calling process.
#ifndef GQA_PLATFORMS_MACHINE_PEAK_H_
#define GQA_PLATFORMS_MACHINE_PEAK_H_

#include <stddef.h>

#include "gqa/gqa.h"

namespace gqa {

// f32 GFLOP/s (2 per FMA) of independent FMA chains on the best Highway
// target, one thread per pool thread (pool may be null: one thread).
double MeasureFmaPeakGflops(pthreadpool_t pool);

// GB/s of reading a buffer of n floats (use far more than the last-level
// cache), split over the pool's threads; the best of a few passes. The
// buffer comes from AllocReadProbe (aligned, filled; free() it), so the
// probe can be repeated during a run without reallocating.
float* AllocReadProbe(size_t bytes, size_t* n);
// The best width of MeasureReadBandwidth (5 passes each).
double ReadBandwidthGbps(const float* data, size_t n, pthreadpool_t pool);

// The read bandwidth at every load width the dispatched target has (the
// full vector, 256 and 128 bits where narrower, distinct widths only: AVX3
// 512/256/128, AVX2 256/128, NEON and SSE4 128). The width matters: on
// Zen4 two threads read ~57 GB/s with 256-bit loads and ~42 GB/s with
// 512-bit ones, so a roof from one width alone can under-state the machine.
inline constexpr int kMaxReadWidths = 3;
struct ReadBandwidth {
  int num_widths = 0;
  int bits[kMaxReadWidths] = {};     // load width, widest first
  double gbps[kMaxReadWidths] = {};  // best pass at that width
  double best_gbps = 0.0;            // the max over the widths: the roof
  int best_bits = 0;
  // Keeps the better of each width's figure (probes repeated in a run).
  void Merge(const ReadBandwidth& o);
};
// passes: the best of this many passes per width (the buffer at ~25 GB/s
// takes ~20 ms for 512 MiB, so 3 widths x 3 passes ~ 0.2 s).
ReadBandwidth MeasureReadBandwidth(const float* data, size_t n,
                                   pthreadpool_t pool, int passes = 3);

// Name of the Highway target the library dispatches to here.
const char* DispatchedTargetName();

// Monotonic seconds.
double NowSeconds();

}  // namespace gqa

#endif  // GQA_PLATFORMS_MACHINE_PEAK_H_
