// The x86 variants of the integer q.k (platforms/qk_int8.h) this CPU runs.
#ifndef GQA_PLATFORMS_X86_QK_INT8_X86_H_
#define GQA_PLATFORMS_X86_QK_INT8_X86_H_

#include "platforms/qk_int8.h"

namespace gqa {

// Writes up to max of them, best first; returns how many.
int X86QkInt8Kernels(const QkInt8Kernels** out, int max);

}  // namespace gqa

#endif  // GQA_PLATFORMS_X86_QK_INT8_X86_H_
