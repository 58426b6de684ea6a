// The one place that chooses the attention kernel (flash or decode) for a
// call, and sizes the workspace for whichever it may be: compiled once per
// Highway target, below the core's one dynamic dispatch per call.

#if defined(GQA_SRC_KERNELS_SELECT_KERNEL_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef GQA_SRC_KERNELS_SELECT_KERNEL_INL_H_
#undef GQA_SRC_KERNELS_SELECT_KERNEL_INL_H_
#else
#define GQA_SRC_KERNELS_SELECT_KERNEL_INL_H_
#endif

#include <pthreadpool.h>
#include <stdint.h>

#include "hwy/base.h"
#include "hwy/highway.h"
#include "hwy/targets.h"
#include "src/attention_core.h"
#include "src/kernels/decode_attention-inl.h"
#include "src/kernels/flash_attention-inl.h"

HWY_BEFORE_NAMESPACE();
namespace gqa {
namespace HWY_NAMESPACE {

// The kernel for p's shapes: decode where there are few query rows per kv
// head, flash otherwise. A call runs it when its flags allow (decode: no
// scores, general mask, query mask or dropout), else flash.
//
// The workspace must not depend on the call's flags: a caller plans and
// sizes the workspace once for its shapes, then runs with or without
// scores, masks or dropout. So where the decode kernel serves the shapes,
// the plan holds both kernels' splits, the slots fit both and the decode
// partials are reserved, whichever kernel a call's flags pick. Shapes the
// decode kernel never serves get the flash plan alone.
void MakePlanImpl(const AttentionParams& p, AttentionPlan* plan) {
  plan->target = HWY_TARGET;
  MakeFlashPlan(p, &plan->flash);
  plan->kernel = AttentionKernel::kFlash;
  plan->slot_bytes = plan->flash.slot_bytes;
  plan->shared_bytes = 0;
  if (DecodeServesShape(p)) {
    plan->kernel = AttentionKernel::kDecode;
    MakeDecodePlan(p, &plan->decode);
    if (plan->decode.slot_bytes > plan->slot_bytes) {
      plan->slot_bytes = plan->decode.slot_bytes;
    }
    plan->shared_bytes = plan->decode.shared_bytes;
  }
  // Both kernels run in the same layout: the shared part, then the slots.
  plan->flash.slot_bytes = plan->decode.slot_bytes = plan->slot_bytes;
  plan->flash.shared_bytes = plan->decode.shared_bytes = plan->shared_bytes;
}

// Runs the kernel the plan and p's flags choose; the plan is never
// recomputed here.
void RunPlannedImpl(const AttentionParams& p, const AttentionPlan& plan,
                    void* workspace, int64_t slots, pthreadpool_t pool) {
  // A plan holds this target's tile sizes: running it on another target
  // would read and write past its scratch.
  if (plan.target != HWY_TARGET) {
    HWY_ABORT("RunAttention: plan made for target %s, run on %s",
              hwy::TargetName(plan.target), hwy::TargetName(HWY_TARGET));
  }
  switch (plan.kernel) {
    case AttentionKernel::kDecode:
      if (DecodeServesFlags(p)) {
        RunDecode(p, plan.decode, workspace, slots, pool);
        return;
      }
      break;
    case AttentionKernel::kFlash:
      break;
  }
  RunFlash(p, plan.flash, workspace, slots, pool);
}

}  // namespace HWY_NAMESPACE
}  // namespace gqa
HWY_AFTER_NAMESPACE();

#endif  // include guard per target
