// Dispatch of the element-wise kernels (src/elementwise.h).
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/elementwise.cc"
#include "src/elementwise.h"

#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "src/kernels/elementwise-inl.h"

#if HWY_ONCE
namespace gqa {

HWY_EXPORT(ConvertF16ToF32Impl);
HWY_EXPORT(ConvertF32ToF16Impl);
HWY_EXPORT(GateRowsImpl);
HWY_EXPORT(ConvertRowsF32ToF16Impl);

void ConvertF16ToF32(const uint16_t* src, float* dst, size_t count) {
  HWY_DYNAMIC_DISPATCH(ConvertF16ToF32Impl)(src, dst, count);
}
void ConvertF32ToF16(const float* src, uint16_t* dst, size_t count) {
  HWY_DYNAMIC_DISPATCH(ConvertF32ToF16Impl)(src, dst, count);
}

void GateRows(float* attn, int64_t attn_stride, const float* gate,
              int64_t gate_stride, int64_t rows, int64_t width) {
  HWY_DYNAMIC_DISPATCH(GateRowsImpl)
  (attn, attn_stride, gate, gate_stride, rows, width);
}

void ConvertRowsF32ToF16(const float* src, int64_t src_stride, uint16_t* dst,
                         int64_t dst_stride, int64_t rows, int64_t cols) {
  HWY_DYNAMIC_DISPATCH(ConvertRowsF32ToF16Impl)
  (src, src_stride, dst, dst_stride, rows, cols);
}

}  // namespace gqa
#endif  // HWY_ONCE
