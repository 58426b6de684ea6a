// The one switch over the per-ISA platform kernels (platforms/: the integer
// q.k, the f16 FMLAL q.k and p.v), for A/B runs and tests.
//
// GQA_PLATFORM_KERNELS in the environment, read once (at the first plan):
//   on      (default, also when unset or unknown; `f16fml` is an alias)
//           every platform kernel the CPU has: the integer q.k (itself
//           opted into per call) and, for f16 K/V, FMLAL
//           (platforms/f16_fml.h), which rounds q and p to f16: errors up
//           to ~2e-3 absolute on O(1) outputs where the f32 path has ~1e-6
//           (bench/PERFORMANCE.md), inside the f16-cache tolerance (3e-3
//           + 3e-3 |want|) and the golden-llm cases' 1e-2;
//   exact   the platform kernels that keep the portable path's accuracy
//           (today the integer q.k): f16 K/V widened to f32, f32 FMA;
//   off     none: every decode plan takes the portable Highway path.
// SetPlatformKernels overrides it for the plans made after the call (an
// operator keeps the plan it was created with). Thread-safe.
#ifndef GQA_PLATFORMS_PLATFORM_KERNELS_H_
#define GQA_PLATFORMS_PLATFORM_KERNELS_H_

namespace gqa {

enum class PlatformKernels : int { kOff = 0, kExact = 1, kOn = 2 };

// The mode plans are made in now.
PlatformKernels PlatformKernelsMode();
// Internal (tests, benches): the mode of the plans made from now on.
void SetPlatformKernels(PlatformKernels mode);

// "off", "exact" or "on": the mode plans are made in now.
const char* PlatformKernelsName();

inline bool PlatformKernelsEnabled() {
  return PlatformKernelsMode() != PlatformKernels::kOff;
}

}  // namespace gqa

#endif  // GQA_PLATFORMS_PLATFORM_KERNELS_H_
