// The one switch over the per-ISA platform kernels (platforms/: the integer
// q.k, the f16 FMLAL q.k and p.v), for A/B runs and tests.
//
// GQA_PLATFORM_KERNELS in the environment, read once (at the first plan):
//   off     none: every decode plan takes the portable Highway path;
//   on      (default, also when unset or unknown) the platform kernels
//           that keep the portable path's accuracy where the CPU has them
//           (today the integer q.k, itself opted into per call);
//   f16fml  on, plus the FMLAL path for f16 K/V (platforms/f16_fml.h),
//           which rounds q and p to f16: errors up to ~6e-4 absolute on
//           O(1) outputs where the f32 path has ~3e-7 (bench/PERFORMANCE.md)
//           - inside the f16-cache tolerance (3e-3), outside the 1e-4 that
//           the f16-input tests hold the f32 path to, so not the default.
// SetPlatformKernels overrides it for the plans made after the call (an
// operator keeps the plan it was created with). Thread-safe.
#ifndef GQA_PLATFORMS_PLATFORM_KERNELS_H_
#define GQA_PLATFORMS_PLATFORM_KERNELS_H_

namespace gqa {

enum class PlatformKernels : int { kOff = 0, kOn = 1, kWithF16Fml = 2 };

// The mode plans are made in now.
PlatformKernels PlatformKernelsMode();
// Internal (tests, benches): the mode of the plans made from now on.
void SetPlatformKernels(PlatformKernels mode);

inline bool PlatformKernelsEnabled() {
  return PlatformKernelsMode() != PlatformKernels::kOff;
}

}  // namespace gqa

#endif  // GQA_PLATFORMS_PLATFORM_KERNELS_H_
