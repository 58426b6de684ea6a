// The choice of the f16 FMLAL kernels (platforms/f16_fml.h): FEAT_FHM read
// from the kernel's hardware capabilities, once. Built with the baseline
// flags: only platforms/arm/f16_fml_arm.cc is built for FEAT_FHM.
#include "platforms/f16_fml.h"

#if defined(__aarch64__)
#include "platforms/arm/f16_fml_arm.h"
#include "platforms/arm/hwcap.h"
#endif

namespace gqa {

const F16FmlKernels* BestF16FmlKernels() {
  static const F16FmlKernels* const best = []() -> const F16FmlKernels* {
#if defined(__aarch64__)
    return ArmHwcapHas(kHwcapAsimdFhm) ? ArmF16FmlKernels() : nullptr;
#else
    return nullptr;  // FMLAL is AArch64 only
#endif
  }();
  return best;
}

}  // namespace gqa
