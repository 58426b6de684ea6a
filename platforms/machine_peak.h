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
double ReadBandwidthGbps(const float* data, size_t n, pthreadpool_t pool);

// Name of the Highway target the library dispatches to here.
const char* DispatchedTargetName();

// Monotonic seconds.
double NowSeconds();

}  // namespace gqa

#endif  // GQA_PLATFORMS_MACHINE_PEAK_H_
