// The choice of the f16 FMLAL kernels (platforms/f16_fml.h): FEAT_FHM read
// from the kernel's hardware capabilities, once. Built with the baseline
// flags: only platforms/arm/f16_fml_arm.cc is built for FEAT_FHM.
#include "platforms/f16_fml.h"

#if defined(__aarch64__)
#include "platforms/arm/f16_fml_arm.h"
#if defined(__linux__)
#include <sys/auxv.h>
#endif
#endif

namespace gqa {
#if defined(__aarch64__)
namespace {

bool CpuHasFhm() {
#if defined(__linux__)
#ifndef HWCAP_ASIMDFHM
#define HWCAP_ASIMDFHM (1 << 23)
#endif
  return (getauxval(AT_HWCAP) & HWCAP_ASIMDFHM) != 0;
#else
  return false;  // no way to ask the OS here (yet): the portable path
#endif
}

}  // namespace
#endif

const F16FmlKernels* BestF16FmlKernels() {
  static const F16FmlKernels* const best = []() -> const F16FmlKernels* {
#if defined(__aarch64__)
    return CpuHasFhm() ? ArmF16FmlKernels() : nullptr;
#else
    return nullptr;  // FMLAL is AArch64 only
#endif
  }();
  return best;
}

}  // namespace gqa
