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

#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace gqa {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// tanh(x) for finite or infinite x (NaN: the caller's), within ~6 ulp of
// the float64 tanh: |x| P(x^2) / Q(x^2) with P, Q of degree 4, fitted for
// relative error on [0, 9] (iterated weighted least squares in float64,
// checked in f32 on 200001 points: at most 5.3 ulp), |x| clamped to 9
// (tanh(9) rounds to 1 in f32) and the result to 1, then the sign of x.
// 14 operations and one division, against hn::Tanh's expm1 and division:
// the softcap's cost on the prefill tiles (issue 13's goal: within 10%).
template <class DF, class V>
HWY_INLINE V TanhRational(DF df, V x) {
  // Min(9, |x|): on x86 (minps returns its second operand where one is
  // NaN) a NaN x stays NaN through to the result; see SoftcapLogits.
  const V a = hn::Min(hn::Set(df, 9.0f), hn::Abs(x));
  const V a2 = hn::Mul(a, a);
  V p = hn::Set(df, 1.3782423202712835e-08f);
  p = hn::MulAdd(p, a2, hn::Set(df, 2.092518116114661e-05f));
  p = hn::MulAdd(p, a2, hn::Set(df, 0.0035151338670402765f));
  p = hn::MulAdd(p, a2, hn::Set(df, 0.133976012468338f));
  p = hn::MulAdd(p, a2, hn::Set(df, 1.0f));
  V q = hn::Set(df, 7.953790941428451e-07f);
  q = hn::MulAdd(q, a2, hn::Set(df, 0.0003317359369248152f));
  q = hn::MulAdd(q, a2, hn::Set(df, 0.025951704010367393f));
  q = hn::MulAdd(q, a2, hn::Set(df, 0.46730926632881165f));
  q = hn::MulAdd(q, a2, hn::Set(df, 1.0f));
  const V t = hn::Min(hn::Set(df, 1.0f), hn::Div(hn::Mul(a, p), q));
  return hn::CopySignToAbs(t, x);
}

// c * tanh(x * inv_c) for c > 0; +-inf gives +-c, NaN stays NaN.
template <class DF, class V>
HWY_INLINE V SoftcapLogits(DF df, V x, V c, V inv_c) {
  const V y = hn::Mul(c, TanhRational(df, hn::Mul(x, inv_c)));
#if HWY_ARCH_X86 && HWY_TARGET != HWY_EMU128 && HWY_TARGET != HWY_SCALAR
  (void)df;
  return y;  // NaN kept by TanhRational's operand order: 2 operations less
#else
  // Arm's Min is minNum (NaN dropped), as are the emulated targets'.
  return hn::IfThenElse(hn::IsNaN(x), x, y);
#endif
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
