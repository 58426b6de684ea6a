// The AArch64 hardware capabilities the OS reports, for the run-time choice
// of the per-ISA kernels in platforms/arm/ (FEAT_FHM, FEAT_DotProd).
#ifndef GQA_PLATFORMS_ARM_HWCAP_H_
#define GQA_PLATFORMS_ARM_HWCAP_H_

#if defined(__linux__)
#include <sys/auxv.h>
#endif

namespace gqa {

// Linux / Android AT_HWCAP bits (asm/hwcap.h).
constexpr unsigned long kHwcapAsimdDp = 1ul << 20;   // SDOT / UDOT
constexpr unsigned long kHwcapAsimdFhm = 1ul << 23;  // FMLAL / FMLAL2

// Whether the OS says the CPU has `bit` of AT_HWCAP; false where there is
// no way to ask it here (not Linux / Android): the portable path.
inline bool ArmHwcapHas(unsigned long bit) {
#if defined(__linux__)
  return (getauxval(AT_HWCAP) & bit) != 0;
#else
  (void)bit;
  return false;
#endif
}

}  // namespace gqa

#endif  // GQA_PLATFORMS_ARM_HWCAP_H_
