// Dispatch of the attention core: compiles the kernel for every Highway
// target and picks one per call.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/attention_core.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "hwy/highway.h"
#include "src/kernels/attention-inl.h"

#if HWY_ONCE
namespace gqa {

HWY_EXPORT(RunAttentionImpl);

void RunAttention(const AttentionParams& p, pthreadpool_t pool) {
  HWY_DYNAMIC_DISPATCH(RunAttentionImpl)(p, pool);
}

}  // namespace gqa
#endif  // HWY_ONCE
