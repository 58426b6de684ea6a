// Dispatch of the attention core: compiles the kernels for every Highway
// target and makes one dynamic dispatch per call, to the plan or the run.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/attention_core.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "src/kernels/select_kernel-inl.h"

#if HWY_ONCE
#include "src/debug_hook.h"

namespace gqa {

HWY_EXPORT(MakePlanImpl);
HWY_EXPORT(RunPlannedImpl);

AttentionPlan PlanAttention(const AttentionParams& p) {
  NotifyDebugHook("plan");
  AttentionPlan plan;
  HWY_DYNAMIC_DISPATCH(MakePlanImpl)(p, &plan);
  return plan;
}

void RunAttention(const AttentionParams& p, const AttentionPlan& plan,
                  void* workspace, int64_t slots, pthreadpool_t pool) {
  HWY_DYNAMIC_DISPATCH(RunPlannedImpl)(p, plan, workspace, slots, pool);
}

}  // namespace gqa
#endif  // HWY_ONCE
