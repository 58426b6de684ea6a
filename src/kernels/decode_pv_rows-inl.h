// Loading a decode p.v tile's V vectors as f32 (PvRowsFixed,
// decode_micro_kernels-inl.h), compiled once per Highway target.

#if defined(GQA_SRC_KERNELS_DECODE_PV_ROWS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef GQA_SRC_KERNELS_DECODE_PV_ROWS_INL_H_
#undef GQA_SRC_KERNELS_DECODE_PV_ROWS_INL_H_
#else
#define GQA_SRC_KERNELS_DECODE_PV_ROWS_INL_H_
#endif

#include <stddef.h>
#include <stdint.h>

#include "hwy/highway.h"
#include "src/kernels/attention_common-inl.h"
#include "src/kernels/vector_registers-inl.h"

HWY_BEFORE_NAMESPACE();
namespace gqa {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// The NV vectors of head dims at vr as f32 (v0..v3; those past NV copy
// v0). AArch64 NEON q8, NV >= 2: one 8-byte load and one widening to
// int16 per pair of vectors instead of two 4-byte loads and two (issue 14:
// the A55's load unit and its 2-wide issue). Exact either way.
template <int NV, class DF, typename T, class V>
HWY_INLINE void LoadRows(DF df, const T* HWY_RESTRICT vr, V& v0, V& v1, V& v2,
                         V& v3) {
  const size_t N = hn::Lanes(df);
#if HWY_ARCH_ARM_A64 && HWY_TARGET == HWY_NEON
  if constexpr (hwy::IsSame<T, int8_t>() && NV >= 2) {
    const hn::Repartition<int16_t, DF> d16;  // 2 vectors' codes
    const hn::Half<decltype(d16)> dh;
    const hn::Rebind<int8_t, decltype(d16)> d8;
    const hn::Rebind<int32_t, DF> di;
    const auto w01 = hn::PromoteTo(d16, hn::LoadU(d8, vr));
    v0 = hn::ConvertTo(df, hn::PromoteTo(di, hn::LowerHalf(dh, w01)));
    v1 = hn::ConvertTo(df, hn::PromoteTo(di, hn::UpperHalf(dh, w01)));
    v2 = v0, v3 = v0;
    if (NV > 2) {
      const auto w23 = hn::PromoteTo(d16, hn::LoadU(d8, vr + 2 * N));
      v2 = hn::ConvertTo(df, hn::PromoteTo(di, hn::LowerHalf(dh, w23)));
      v3 = hn::ConvertTo(df, hn::PromoteTo(di, hn::UpperHalf(dh, w23)));
    }
    return;
  }
#endif
  v0 = LoadRow(df, vr);
  v1 = v0, v2 = v0, v3 = v0;
  if (NV > 1) v1 = LoadRow(df, vr + N);
  if (NV > 2) v2 = LoadRow(df, vr + 2 * N);
  if (NV > 3) v3 = LoadRow(df, vr + 3 * N);
}

}  // namespace HWY_NAMESPACE
}  // namespace gqa
HWY_AFTER_NAMESPACE();

#endif  // include guard per target
