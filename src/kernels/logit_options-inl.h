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

// tanh(x) = x P(x^2) / Q(x^2) on |x| <= 9 with P, Q of degree 4, fitted
// for relative error on [0, 9] (iterated weighted least squares in
// float64, checked in f32 on 200001 points: at most 5.3 ulp); tanh(9)
// rounds to 1 in f32. Coefficients from the constant term up.
constexpr double kTanhP[5] = {1.0, 0.133976012468338, 0.0035151338670402765,
                              2.092518116114661e-05, 1.3782423202712835e-08};
constexpr double kTanhQ[5] = {1.0, 0.46730926632881165, 0.025951704010367393,
                              0.0003317359369248152, 7.953790941428451e-07};

// tanh(x) for finite or infinite x (NaN: the caller's), within ~6 ulp of
// the float64 tanh: |x| clamped to 9 and the result to 1, then the sign of
// x. 14 operations and one division, against hn::Tanh's expm1 and division.
template <class DF, class V>
HWY_INLINE V TanhRational(DF df, V x) {
  // Min(9, |x|): on x86 (minps returns its second operand where one is
  // NaN) a NaN x stays NaN through to the result; see Softcap.
  const V a = hn::Min(hn::Set(df, 9.0f), hn::Abs(x));
  const V a2 = hn::Mul(a, a);
  V p = hn::Set(df, static_cast<float>(kTanhP[4]));
  V q = hn::Set(df, static_cast<float>(kTanhQ[4]));
  for (int i = 3; i >= 0; --i) {
    p = hn::MulAdd(p, a2, hn::Set(df, static_cast<float>(kTanhP[i])));
    q = hn::MulAdd(q, a2, hn::Set(df, static_cast<float>(kTanhQ[i])));
  }
  const V t = hn::Min(hn::Set(df, 1.0f), hn::Div(hn::Mul(a, p), q));
  return hn::CopySignToAbs(t, x);
}

// The softcap c * tanh(x / c) prepared once per call. For c in
// [2^-20, 2^20] c is folded into the coefficients: c tanh(x / c) =
// x P(x^2 / c^2) / Q(x^2 / c^2) = x (P'(x^2) / Q'(x^2)) with
// P'_i = c^(4 - 2i) P_i (Q' alike; the common factor c^4 keeps every
// coefficient and partial sum normal in f32 there), x^2 clamped to 81c^2
// and the result to +-c: 14 operations against 18 for tanh(x / c) times
// c, which is what the decode kernel's score pass spends its time on
// (issue 13: the softcap within 5% on decode).
// Outside that range: c * TanhRational(x / c), and x where |x| < 2^-12 c.
struct SoftcapConsts {
  float p[5], q[5];
  float c, neg_c, inv_c;  // the softcap, -c, 1 / c
  float lim2;             // 81 c^2: where tanh(x / c) rounds to 1
  bool folded;
};

HWY_INLINE SoftcapConsts MakeSoftcap(float c) {
  SoftcapConsts k;
  k.c = c;
  k.neg_c = -c;
  k.lim2 = 81.0f * c * c;
  k.inv_c = c > 0.0f ? 1.0f / c : 0.0f;
  k.folded = c >= 0x1p-20f && c <= 0x1p20f;
  const double c2 = k.folded ? static_cast<double>(c) * c : 1.0;
  const double scale[5] = {c2 * c2, c2, 1.0, 1.0 / c2, 1.0 / (c2 * c2)};
  for (int i = 0; i < 5; ++i) {
    k.p[i] = static_cast<float>(kTanhP[i] * scale[i]);
    k.q[i] = static_cast<float>(kTanhQ[i] * scale[i]);
  }
  return k;
}

// c * tanh(x / c) for c > 0; +-inf gives +-c, NaN stays NaN, |result| <= c.
template <class DF, class V>
HWY_INLINE V Softcap(DF df, V x, const SoftcapConsts& k) {
  V y;
  if (HWY_LIKELY(k.folded)) {
    // u = min(x^2, 81 c^2): for |x| > 9c, x r(u) exceeds c and the clamp
    // gives +-c (+-inf too). Constants first: on x86 a NaN is the operand
    // min/max return.
    const V u = hn::Min(hn::Set(df, k.lim2), hn::Mul(x, x));
    V p = hn::Set(df, k.p[4]);
    V q = hn::Set(df, k.q[4]);
    for (int i = 3; i >= 0; --i) {
      p = hn::MulAdd(p, u, hn::Set(df, k.p[i]));
      q = hn::MulAdd(q, u, hn::Set(df, k.q[i]));
    }
    y = hn::Max(hn::Set(df, k.neg_c),
                hn::Min(hn::Set(df, k.c), hn::Mul(x, hn::Div(p, q))));
  } else {
    // |x| < 2^-12 c: tanh(y) = y within half an ulp, and x / c may
    // underflow: x itself.
    y = hn::Mul(hn::Set(df, k.c),
                TanhRational(df, hn::Mul(x, hn::Set(df, k.inv_c))));
    y = hn::IfThenElse(hn::Lt(hn::Abs(x), hn::Set(df, 0x1p-12f * k.c)), x, y);
  }
#if HWY_ARCH_X86 && HWY_TARGET != HWY_EMU128 && HWY_TARGET != HWY_SCALAR
  return y;  // NaN kept by the operand order: no blend
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
