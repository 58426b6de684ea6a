// The LLM logit options on a vector of logits (llm-attention-semantics.md
// 2.2-2.3), compiled once per Highway target and shared by the flash and
// decode kernels: softcap c * tanh(x / c) with NaN kept, and the ALiBi term
// -m * |pq - pk|. The additive bias is read per element by each kernel.

#if defined(GQA_SRC_KERNELS_LOGIT_OPTIONS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef GQA_SRC_KERNELS_LOGIT_OPTIONS_INL_H_
#undef GQA_SRC_KERNELS_LOGIT_OPTIONS_INL_H_
#else
#define GQA_SRC_KERNELS_LOGIT_OPTIONS_INL_H_
#endif

#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace gqa {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// c * tanh(x * inv_c) for c > 0; +-inf gives +-c, NaN stays NaN.
template <class DF, class V>
HWY_INLINE V SoftcapLogits(DF df, V x, V c, V inv_c) {
  const V y = hn::Mul(c, hn::Tanh(df, hn::Mul(x, inv_c)));
  return hn::IfThenElse(hn::IsNaN(x), x, y);
}

// x - slope * |qpos - kpos| (positions exact in f32 below 2^24).
template <class V>
HWY_INLINE V AlibiLogits(V x, V slope, V qpos, V kpos) {
  return hn::NegMulAdd(slope, hn::Abs(hn::Sub(qpos, kpos)), x);
}

}  // namespace HWY_NAMESPACE
}  // namespace gqa
HWY_AFTER_NAMESPACE();

#endif  // include guard per target
