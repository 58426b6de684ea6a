// The SDOT (FEAT_DotProd) integer q.k loops of
// platforms/arm/qk_int8_arm-inl.h, wrapped in extern "C" noinline
// functions (gqa_mca_*) so that bench/arm_mca.py can find each one's inner
// loop in the assembly and feed it to llvm-mca next to the f32 loops of
// bench/mca/mca_kernels.cc.
//
// Built only as assembly by bench/arm_mca.py, never linked into anything:
//   aarch64-linux-gnu-g++ -std=c++17 -O3 -march=armv8.2-a+dotprod -S
// Every argument is a run-time value, as in the library, except the 4 rows
// the library fixes at compile time.

#include <arm_neon.h>
#include <stdint.h>

#include "platforms/arm/qk_int8_arm-inl.h"

extern "C" {

// q8 keys: one key row against 4 prepared query rows, 32 elements a step
// (8 SDOT, 128 MACs).
__attribute__((noinline)) void gqa_mca_decode_qk_sdot_q8(
    const unsigned char* q, int64_t q_bytes, const unsigned char* k,
    int64_t dim, const float* scale, float* dst) {
  gqa::sdot::Q8Rows<4>(q, q_bytes, k, dim, vld1q_f32(scale), dst);
}

// q4 keys: one key row against 4 prepared query rows, 64 elements a step
// (16 SDOT, 256 MACs).
__attribute__((noinline)) void gqa_mca_decode_qk_sdot_q4(
    const unsigned char* q, int64_t q_bytes, const unsigned char* k,
    const unsigned char* k_scales, int64_t dim, const float* scale,
    float* dst) {
  gqa::sdot::Q4Rows<4>(q, q_bytes, k, k_scales, dim, vld1q_f32(scale), dst);
}

}  // extern "C"
