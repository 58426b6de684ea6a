// Element-wise kernels, compiled once per Highway target: the f16 <-> f32
// conversions, the layer's gate (attn *= sigmoid(gate logits)) and f32 ->
// f16 rows, each over all rows of a call in one dispatch.

#if defined(GQA_SRC_KERNELS_ELEMENTWISE_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef GQA_SRC_KERNELS_ELEMENTWISE_INL_H_
#undef GQA_SRC_KERNELS_ELEMENTWISE_INL_H_
#else
#define GQA_SRC_KERNELS_ELEMENTWISE_INL_H_
#endif

#include <stddef.h>
#include <stdint.h>

#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"
#include "src/half.h"
#include "src/kernels/half_load-inl.h"

HWY_BEFORE_NAMESPACE();
namespace gqa {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

void ConvertF16ToF32Impl(const uint16_t* src, float* dst, size_t count) {
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  size_t i = 0;
  for (; i + N <= count; i += N)
    hn::StoreU(LoadF16AsF32(df, src + i), df, dst + i);
  for (; i < count; ++i) dst[i] = HalfToFloat(src[i]);
}

// Highway 1.0.3 emulates DemoteTo(f16) by truncation where the CPU has no
// conversion instruction (x86 below AVX2, scalar); gqa rounds to nearest
// even everywhere, so those targets take the exact scalar path.
#if HWY_TARGET == HWY_SSE4 || HWY_TARGET == HWY_SSSE3 || \
    HWY_TARGET == HWY_SCALAR || HWY_TARGET == HWY_EMU128
#define GQA_DEMOTE_F16_IS_EXACT 0
#else
#define GQA_DEMOTE_F16_IS_EXACT 1
#endif

void ConvertF32ToF16Impl(const float* src, uint16_t* dst, size_t count) {
#if !GQA_DEMOTE_F16_IS_EXACT
  for (size_t i = 0; i < count; ++i) dst[i] = FloatToHalf(src[i]);
#else
  const hn::ScalableTag<float> df;
  const hn::Rebind<hwy::float16_t, decltype(df)> dh;
  const size_t N = hn::Lanes(df);
  size_t i = 0;
  for (; i + N <= count; i += N) {
    hn::StoreU(hn::DemoteTo(dh, hn::LoadU(df, src + i)), dh,
               reinterpret_cast<hwy::float16_t*>(dst + i));
  }
  for (; i < count; ++i) dst[i] = FloatToHalf(src[i]);
#endif
}
#undef GQA_DEMOTE_F16_IS_EXACT

// sigmoid(g) = 1 / (1 + exp(-g)). exp(-g) is evaluated on [-104, 88], where
// hn::Exp is accurate and finite; for g < -88 the true value is below
// 6.1e-39 and 0 is returned (as 1 / (1 + expf(-g)) rounds there too, up to
// denormals); a NaN logit stays NaN (hn::Exp alone would turn it into 0).
template <class DF, class V>
HWY_INLINE V Sigmoid(DF df, V g) {
  const V x = hn::Neg(g);
  const V e = hn::Exp(
      df, hn::Min(hn::Max(x, hn::Set(df, -104.0f)), hn::Set(df, 88.0f)));
  const V one = hn::Set(df, 1.0f);
  const V s = hn::IfThenZeroElse(hn::Gt(x, hn::Set(df, 88.0f)),
                                 hn::Div(one, hn::Add(one, e)));
  return hn::IfThenElse(hn::IsNaN(g), g, s);
}

// attn[r, i] *= sigmoid(gate[r, i]) for r < rows, i < width.
//   attn: [rows, attn_stride] f32; gate: [rows, gate_stride] f32.
void GateRowsImpl(float* HWY_RESTRICT attn, int64_t attn_stride,
                  const float* HWY_RESTRICT gate, int64_t gate_stride,
                  int64_t rows, int64_t width) {
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  for (int64_t r = 0; r < rows; ++r) {
    float* a = attn + r * attn_stride;
    const float* g = gate + r * gate_stride;
    int64_t i = 0;
    for (; i + N <= width; i += N) {
      const auto s = Sigmoid(df, hn::LoadU(df, g + i));
      hn::StoreU(hn::Mul(hn::LoadU(df, a + i), s), df, a + i);
    }
    if (i < width) {  // the last partial vector through a zero-padded copy
      HWY_ALIGN float ga[HWY_MAX_BYTES / sizeof(float)] = {};
      HWY_ALIGN float aa[HWY_MAX_BYTES / sizeof(float)] = {};
      const int64_t n = width - i;
      for (int64_t j = 0; j < n; ++j) ga[j] = g[i + j], aa[j] = a[i + j];
      const auto s = Sigmoid(df, hn::Load(df, ga));
      hn::Store(hn::Mul(hn::Load(df, aa), s), df, aa);
      for (int64_t j = 0; j < n; ++j) a[i + j] = aa[j];
    }
  }
}

// dst[r, 0..cols) = half(src[r, 0..cols)) (round to nearest even).
//   src: [rows, src_stride] f32; dst: [rows, dst_stride] f16 bits.
void ConvertRowsF32ToF16Impl(const float* src, int64_t src_stride,
                             uint16_t* dst, int64_t dst_stride, int64_t rows,
                             int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    ConvertF32ToF16Impl(src + r * src_stride, dst + r * dst_stride,
                        static_cast<size_t>(cols));
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace gqa
HWY_AFTER_NAMESPACE();

#endif  // include guard per target
