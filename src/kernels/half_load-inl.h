// f16 -> f32 vector loads shared by every kernel, compiled once per Highway
// target: exact for every f16 value, Inf and NaN included.
//
// Highway 1.0.3 emulates PromoteTo(f32, f16) where the CPU has no
// conversion instruction (x86 SSSE3/SSE4, scalar, emu128, ARM without
// __ARM_FP f16 support), and its emulation decodes exponent 31 as a normal
// number: f16 Inf becomes 65536 and NaN 98304 or more. A NaN in an f16 K, V
// or weight must stay a NaN, so those targets patch exponent-31 lanes.

#if defined(GQA_SRC_KERNELS_HALF_LOAD_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef GQA_SRC_KERNELS_HALF_LOAD_INL_H_
#undef GQA_SRC_KERNELS_HALF_LOAD_INL_H_
#else
#define GQA_SRC_KERNELS_HALF_LOAD_INL_H_
#endif

#include <stdint.h>

#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace gqa {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if (HWY_ARCH_X86 && HWY_TARGET >= HWY_SSE4) || HWY_TARGET == HWY_SCALAR || \
    HWY_TARGET == HWY_EMU128 || (HWY_ARCH_ARM && !(__ARM_FP & 2))
#define GQA_F16_PROMOTE_EMULATED 1
#else
#define GQA_F16_PROMOTE_EMULATED 0
#endif

// Lanes(df) f16 values at p as f32.
template <class DF>
HWY_INLINE hn::Vec<DF> LoadF16AsF32(DF df, const uint16_t* p) {
  const hn::Rebind<hwy::float16_t, DF> dh;
  const auto v = hn::PromoteTo(
      df, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(p)));
#if GQA_F16_PROMOTE_EMULATED
  const hn::RebindToUnsigned<DF> du;
  const hn::Rebind<uint16_t, DF> du16;
  const auto bits = hn::PromoteTo(du, hn::LoadU(du16, p));
  const auto exp_mask = hn::Set(du, 0x7C00u);
  const auto special = hn::Eq(hn::And(bits, exp_mask), exp_mask);
  // sign | all-ones exponent | mantissa: the same Inf or NaN in f32.
  const auto wide =
      hn::Or(hn::ShiftLeft<16>(hn::And(bits, hn::Set(du, 0x8000u))),
             hn::Or(hn::Set(du, 0x7F800000u),
                    hn::ShiftLeft<13>(hn::And(bits, hn::Set(du, 0x3FFu)))));
  return hn::IfThenElse(hn::RebindMask(df, special), hn::BitCast(df, wide), v);
#else
  return v;
#endif
}
#undef GQA_F16_PROMOTE_EMULATED

}  // namespace HWY_NAMESPACE
}  // namespace gqa
HWY_AFTER_NAMESPACE();

#endif  // include guard per target
