// Dispatch of the f16-weight dense kernel and the f16 conversions.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/dense_f16.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "hwy/highway.h"
#include "src/kernels/dense_f16-inl.h"

#if HWY_ONCE
namespace gqa {

HWY_EXPORT(RunDenseF16Impl);
HWY_EXPORT(ConvertF16ToF32Impl);
HWY_EXPORT(ConvertF32ToF16Impl);

void RunDenseF16(const DenseF16Params& p, pthreadpool_t pool) {
  HWY_DYNAMIC_DISPATCH(RunDenseF16Impl)(p, pool);
}
void ConvertF16ToF32(const uint16_t* src, float* dst, size_t count) {
  HWY_DYNAMIC_DISPATCH(ConvertF16ToF32Impl)(src, dst, count);
}
void ConvertF32ToF16(const float* src, uint16_t* dst, size_t count) {
  HWY_DYNAMIC_DISPATCH(ConvertF32ToF16Impl)(src, dst, count);
}

}  // namespace gqa
#endif  // HWY_ONCE
