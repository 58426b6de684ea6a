// FMA peak and read bandwidth probes (see machine_peak.h), one Highway
// dispatch each (the read probe once per load width).
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "platforms/machine_peak.cc"
#include "platforms/machine_peak.h"

#include <pthreadpool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace gqa {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// 12 independent accumulators hide the FMA latency (4-5 cycles) on two
// FMA pipes. Returns flops done.
HWY_NOINLINE double FmaChains(int64_t iters, float* sink) {
  const hn::ScalableTag<float> df;
  // Distinct starting values: equal chains would be merged by the compiler
  // into one (and the flops over-counted twelvefold).
  auto a0 = hn::Set(df, *sink + 1.0f), a1 = hn::Set(df, *sink + 1.01f),
       a2 = hn::Set(df, *sink + 1.02f), a3 = hn::Set(df, *sink + 1.03f),
       a4 = hn::Set(df, *sink + 1.04f), a5 = hn::Set(df, *sink + 1.05f),
       a6 = hn::Set(df, *sink + 1.06f), a7 = hn::Set(df, *sink + 1.07f),
       a8 = hn::Set(df, *sink + 1.08f), a9 = hn::Set(df, *sink + 1.09f),
       a10 = hn::Set(df, *sink + 1.10f), a11 = hn::Set(df, *sink + 1.11f);
  const auto m = hn::Set(df, 0.999999f), c = hn::Set(df, 1e-7f);
  for (int64_t i = 0; i < iters; ++i) {
    a0 = hn::MulAdd(a0, m, c);
    a1 = hn::MulAdd(a1, m, c);
    a2 = hn::MulAdd(a2, m, c);
    a3 = hn::MulAdd(a3, m, c);
    a4 = hn::MulAdd(a4, m, c);
    a5 = hn::MulAdd(a5, m, c);
    a6 = hn::MulAdd(a6, m, c);
    a7 = hn::MulAdd(a7, m, c);
    a8 = hn::MulAdd(a8, m, c);
    a9 = hn::MulAdd(a9, m, c);
    a10 = hn::MulAdd(a10, m, c);
    a11 = hn::MulAdd(a11, m, c);
  }
  auto s = hn::Add(hn::Add(hn::Add(a0, a1), hn::Add(a2, a3)),
                   hn::Add(hn::Add(a4, a5), hn::Add(a6, a7)));
  s = hn::Add(s, hn::Add(hn::Add(a8, a9), hn::Add(a10, a11)));
  *sink += hn::GetLane(s);
  return 2.0 * 12.0 * static_cast<double>(hn::Lanes(df)) *
         static_cast<double>(iters);
}

// Sums n floats (n a multiple of 4 vectors of d) with four independent
// accumulators: the loads, not the adds, bound it.
template <class D>
HWY_INLINE float SumFloats(D d, const float* p, size_t n) {
  const size_t N = hn::Lanes(d);
  auto s0 = hn::Zero(d), s1 = s0, s2 = s0, s3 = s0;
  size_t i = 0;
  for (; i + 4 * N <= n; i += 4 * N) {
    s0 = hn::Add(s0, hn::LoadU(d, p + i));
    s1 = hn::Add(s1, hn::LoadU(d, p + i + N));
    s2 = hn::Add(s2, hn::LoadU(d, p + i + 2 * N));
    s3 = hn::Add(s3, hn::LoadU(d, p + i + 3 * N));
  }
  return hn::GetLane(
      hn::SumOfLanes(d, hn::Add(hn::Add(s0, s1), hn::Add(s2, s3))));
}

// Load widths the probe tries: 0 the target's full vector, 1 at most 256
// bits, 2 at most 128 bits (Capped tags: partial vectors where the target
// is wider, e.g. SVE or AVX3; the same width again where it is not).
HWY_NOINLINE float SumFloatsAtWidth(const float* p, size_t n, int which) {
  if (which == 1) return SumFloats(hn::CappedTag<float, 8>(), p, n);
  if (which == 2) return SumFloats(hn::CappedTag<float, 4>(), p, n);
  return SumFloats(hn::ScalableTag<float>(), p, n);
}

int LoadBitsAtWidth(int which) {
  size_t lanes = hn::Lanes(hn::ScalableTag<float>());
  if (which == 1) lanes = hn::Lanes(hn::CappedTag<float, 8>());
  if (which == 2) lanes = hn::Lanes(hn::CappedTag<float, 4>());
  return static_cast<int>(lanes * 32);
}

const char* TargetNameImpl() { return hwy::TargetName(HWY_TARGET); }

}  // namespace HWY_NAMESPACE
}  // namespace gqa
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace gqa {

HWY_EXPORT(FmaChains);
HWY_EXPORT(SumFloatsAtWidth);
HWY_EXPORT(LoadBitsAtWidth);
HWY_EXPORT(TargetNameImpl);

double NowSeconds() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) +
         1e-9 * static_cast<double>(ts.tv_nsec);
}

const char* DispatchedTargetName() {
  return HWY_DYNAMIC_DISPATCH(TargetNameImpl)();
}

namespace {
struct PeakTask {
  int64_t iters;
  float sink[64];
  double flops[64];
};
void PeakFn(void* ctx, size_t i) {
  PeakTask* t = static_cast<PeakTask*>(ctx);
  t->flops[i] = HWY_DYNAMIC_DISPATCH(FmaChains)(t->iters, &t->sink[i]);
}
struct ReadTask {
  const float* data;
  size_t per_thread;
  int which;
  float sink[64];
};
void ReadFn(void* ctx, size_t i) {
  ReadTask* t = static_cast<ReadTask*>(ctx);
  t->sink[i] = HWY_DYNAMIC_DISPATCH(SumFloatsAtWidth)(
      t->data + i * t->per_thread, t->per_thread, t->which);
}
size_t Threads(pthreadpool_t pool) {
  size_t n = pool ? pthreadpool_get_threads_count(pool) : 1;
  return n > 64 ? 64 : n;
}
}  // namespace

double MeasureFmaPeakGflops(pthreadpool_t pool) {
  const size_t threads = Threads(pool);
  PeakTask task{};
  task.iters = 1 << 16;
  // Grow until one run takes >= 50 ms, then take the best of 5.
  for (;;) {
    const double t0 = NowSeconds();
    pthreadpool_parallelize_1d(pool, PeakFn, &task, threads, 0);
    if (NowSeconds() - t0 > 0.05 || task.iters > (int64_t{1} << 34)) break;
    task.iters *= 2;
  }
  double best = 0.0;
  for (int rep = 0; rep < 5; ++rep) {
    const double t0 = NowSeconds();
    pthreadpool_parallelize_1d(pool, PeakFn, &task, threads, 0);
    const double dt = NowSeconds() - t0;
    double flops = 0.0;
    for (size_t i = 0; i < threads; ++i) flops += task.flops[i];
    if (flops / dt > best) best = flops / dt;
  }
  return best * 1e-9;
}

void ReadBandwidth::Merge(const ReadBandwidth& o) {
  for (int w = 0; w < o.num_widths; ++w) {
    int slot = 0;
    while (slot < num_widths && bits[slot] != o.bits[w]) ++slot;
    if (slot == num_widths) {
      if (num_widths == kMaxReadWidths) continue;
      bits[num_widths++] = o.bits[w];
    }
    if (o.gbps[w] > gbps[slot]) gbps[slot] = o.gbps[w];
  }
  for (int w = 0; w < num_widths; ++w) {
    if (gbps[w] > best_gbps) best_gbps = gbps[w], best_bits = bits[w];
  }
}

ReadBandwidth MeasureReadBandwidth(const float* data, size_t n,
                                   pthreadpool_t pool, int passes) {
  const size_t threads = Threads(pool);
  ReadTask task{};
  task.data = data;
  // A whole number of 4 x 512-bit steps per thread, so every width reads
  // exactly the bytes counted.
  task.per_thread = n / threads / 64 * 64;
  const double bytes =
      static_cast<double>(task.per_thread * threads * sizeof(float));
  ReadBandwidth r;
  for (int which = 0; which < kMaxReadWidths; ++which) {
    const int bits = HWY_DYNAMIC_DISPATCH(LoadBitsAtWidth)(which);
    if (r.num_widths > 0 && bits == r.bits[r.num_widths - 1]) continue;
    task.which = which;
    double best = 0.0;
    for (int rep = 0; rep < passes; ++rep) {
      const double t0 = NowSeconds();
      pthreadpool_parallelize_1d(pool, ReadFn, &task, threads, 0);
      const double gbps = bytes / (NowSeconds() - t0) * 1e-9;
      if (gbps > best) best = gbps;
    }
    r.bits[r.num_widths] = bits;
    r.gbps[r.num_widths++] = best;
    if (best > r.best_gbps) r.best_gbps = best, r.best_bits = bits;
  }
  return r;
}

double ReadBandwidthGbps(const float* data, size_t n, pthreadpool_t pool) {
  return MeasureReadBandwidth(data, n, pool, 5).best_gbps;
}

float* AllocReadProbe(size_t bytes, size_t* n) {
  *n = bytes / sizeof(float);
  float* data = static_cast<float*>(aligned_alloc(64, *n * sizeof(float)));
  if (!data) return nullptr;
  for (size_t i = 0; i < *n; ++i) data[i] = static_cast<float>(i & 7);
  return data;
}

}  // namespace gqa
#endif  // HWY_ONCE
