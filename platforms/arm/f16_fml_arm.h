// The AArch64 FEAT_FHM kernels of platforms/f16_fml.h (f16_fml_arm.cc, the
// one file built with +fp16fml): call only where the CPU has FEAT_FHM.
#ifndef GQA_PLATFORMS_ARM_F16_FML_ARM_H_
#define GQA_PLATFORMS_ARM_F16_FML_ARM_H_

#include "platforms/f16_fml.h"

namespace gqa {

const F16FmlKernels* ArmF16FmlKernels();

}  // namespace gqa

#endif  // GQA_PLATFORMS_ARM_F16_FML_ARM_H_
