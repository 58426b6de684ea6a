// Element-wise steps, one dynamic dispatch each: f16 <-> f32 conversion,
// and over all rows of a layer call the gate and the f32 -> f16 outputs.
#ifndef GQA_SRC_ELEMENTWISE_H_
#define GQA_SRC_ELEMENTWISE_H_

#include <stddef.h>
#include <stdint.h>

namespace gqa {

// dst[i] = float(src[i]) for i < count (exact, Inf and NaN included).
void ConvertF16ToF32(const uint16_t* src, float* dst, size_t count);
// dst[i] = half(src[i]) (round to nearest even) for i < count.
void ConvertF32ToF16(const float* src, uint16_t* dst, size_t count);

// attn[r, i] *= sigmoid(gate[r, i]), r < rows, i < width; row strides in
// elements. A NaN logit makes the element NaN.
void GateRows(float* attn, int64_t attn_stride, const float* gate,
              int64_t gate_stride, int64_t rows, int64_t width);

// dst[r, 0..cols) = half(src[r, 0..cols)), round to nearest even.
void ConvertRowsF32ToF16(const float* src, int64_t src_stride, uint16_t* dst,
                         int64_t dst_stride, int64_t rows, int64_t cols);

}  // namespace gqa

#endif  // GQA_SRC_ELEMENTWISE_H_
