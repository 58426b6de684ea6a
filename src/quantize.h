// Exact quantization of KV cache rows (spec shared/spec/llm-attention-
// semantics.md 4.2): the fixed f32 Hadamard rotation of an appended row, and
// the q8 (one f16 scale per row) and q4 (one f16 scale per 32 elements)
// codes with their dequantization. The dequantized values are bit-exact with
// the float64/numpy reference (llm_attention_ref.py quantize/dequantize/
// fwht_f32); the append path calls these once per stored row.
#ifndef GQA_SRC_QUANTIZE_H_
#define GQA_SRC_QUANTIZE_H_

#include <stdint.h>

namespace gqa {

// Elements per q4 scale group.
inline constexpr int64_t kQ4GroupSize = 32;

// Spec 4.2 rotation of an appended row, in place, n a power of two: the f32
// butterfly for h = 1,2,4,..,n/2 over j with (j&h)==0: (x_j, x_{j+h}) =
// (x_j + x_{j+h}, x_j - x_{j+h}), then each element times f32(1/sqrt(n)).
void RotateRowF32(float* x, int64_t n);

// Bytes/scales of one stored row: q8 n codes + 1 scale; q4 n/2 bytes + n/32
// scales. Scales are IEEE binary16 bits. A row holding a NaN or infinity, or
// one whose max|x|/qmax overflows f16, gets a NaN/inf scale and all-zero
// codes: it dequantizes to NaN (0 * inf), as the reference does.
void QuantizeRowQ8(const float* x, int64_t n, int8_t* codes, uint16_t* scale);
// n % 32 == 0. packed: in each group of 32, byte i (0..15) holds element i
// in its low nibble and element i + 16 in its high nibble, each as code + 8.
void QuantizeRowQ4(const float* x, int64_t n, uint8_t* packed,
                   uint16_t* scales);
// out[i] = code_i * d in f32 (exact).
void DequantizeRowQ8(const int8_t* codes, uint16_t scale, int64_t n,
                     float* out);
void DequantizeRowQ4(const uint8_t* packed, const uint16_t* scales, int64_t n,
                     float* out);

}  // namespace gqa

#endif  // GQA_SRC_QUANTIZE_H_
