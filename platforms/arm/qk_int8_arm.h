// The AArch64 variant of the integer q.k (platforms/qk_int8.h) this CPU
// runs: SDOT (FEAT_DotProd), or none.
#ifndef GQA_PLATFORMS_ARM_QK_INT8_ARM_H_
#define GQA_PLATFORMS_ARM_QK_INT8_ARM_H_

#include "platforms/qk_int8.h"

namespace gqa {

// Writes up to max of them, best first; returns how many.
int ArmQkInt8Kernels(const QkInt8Kernels** out, int max);

}  // namespace gqa

#endif  // GQA_PLATFORMS_ARM_QK_INT8_ARM_H_
