// Dispatch of the attention core: compiles the kernel for every Highway
// target and picks one per call.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/attention_core.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "hwy/highway.h"
#include "src/kernels/flash_attention-inl.h"
#include "src/kernels/decode_attention-inl.h"

#if HWY_ONCE
namespace gqa {

HWY_EXPORT(MakePlanImpl);
HWY_EXPORT(RunAttentionImpl);

AttentionPlan PlanAttention(const AttentionParams& p) {
  AttentionPlan plan;
  HWY_DYNAMIC_DISPATCH(MakePlanImpl)(p, &plan);
  return plan;
}

void RunAttention(const AttentionParams& p, void* workspace, int64_t slots,
                  pthreadpool_t pool) {
  HWY_DYNAMIC_DISPATCH(RunAttentionImpl)(p, workspace, slots, pool);
}

}  // namespace gqa
#endif  // HWY_ONCE
