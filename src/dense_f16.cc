// Dispatch of the f16-weight dense kernel, and the packing of its weights.
#include <string.h>

#include "src/half.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/dense_f16.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "src/kernels/dense_f16-inl.h"

#if HWY_ONCE
namespace gqa {

void PackHalfKernel(const void* src, int64_t rows, int64_t cols,
                    int64_t cols_padded, uint16_t* dst) {
  const uint16_t* s = static_cast<const uint16_t*>(src);
  for (int64_t r = 0; r < rows; ++r) {
    memcpy(dst + r * cols_padded, s + r * cols,
           static_cast<size_t>(cols) * sizeof(uint16_t));
    memset(dst + r * cols_padded + cols, 0,
           static_cast<size_t>(cols_padded - cols) * sizeof(uint16_t));
  }
}

void PackHalfBias(const void* src, int64_t cols, int64_t cols_padded,
                  float* dst) {
  memset(dst, 0, static_cast<size_t>(cols_padded) * sizeof(float));
  if (src == nullptr) return;
  const uint16_t* s = static_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < cols; ++i) dst[i] = HalfToFloat(s[i]);
}

HWY_EXPORT(RunDenseF16Impl);

void RunDenseF16(const DenseF16Params& p, pthreadpool_t pool) {
  HWY_DYNAMIC_DISPATCH(RunDenseF16Impl)(p, pool);
}
}  // namespace gqa
#endif  // HWY_ONCE
