// The FEAT_FHM (FMLAL) decode loops of platforms/arm/f16_fml_arm-inl.h,
// wrapped in extern "C" noinline functions (gqa_mca_*) so that
// bench/arm_mca.py can find each one's inner loop in the assembly and feed
// it to llvm-mca next to the f32 loops of bench/mca/mca_kernels.cc.
//
// Built only as assembly by bench/arm_mca.py, never linked into anything:
//   aarch64-linux-gnu-g++ -std=c++17 -O3 -march=armv8.2-a+fp16+fp16fml -S
// Every argument is a run-time value, as in the library, except the tile
// (rows, vectors) that the library fixes at compile time.

#include <stdint.h>

#include "platforms/arm/f16_fml_arm-inl.h"

namespace fhm = gqa::fhm;

extern "C" {

// Decode q.k: 4 query rows x 4 keys of one head, 8 f16 elements a step
// (32 FMLAL/FMLAL2).
__attribute__((noinline)) void gqa_mca_decode_qk_fml_f16(
    const uint16_t* q, int64_t q_stride, const uint16_t* k, int64_t ks,
    int64_t dim, float* s, int64_t slots) {
  fhm::QkFourKeys<4>(q, q_stride, k, ks, dim, s, slots);
}

// Decode p.v, 8 rows x 8 head dims (16 accumulators) over keys: the tile of
// a full pass (G*T >= 8).
__attribute__((noinline)) void gqa_mca_decode_pv_fml8_f16(
    const uint16_t* p16, const float* alpha, const uint16_t* v,
    int64_t key_stride, int64_t keys, float* acc, int64_t acc_stride,
    int64_t d) {
  fhm::PvFixed<8, 1>(p16, alpha, v, key_stride, keys, acc, acc_stride, d);
}

// Decode p.v, 4 rows x 16 head dims (16 accumulators) over keys.
__attribute__((noinline)) void gqa_mca_decode_pv_fml4_f16(
    const uint16_t* p16, const float* alpha, const uint16_t* v,
    int64_t key_stride, int64_t keys, float* acc, int64_t acc_stride,
    int64_t d) {
  fhm::PvFixed<4, 2>(p16, alpha, v, key_stride, keys, acc, acc_stride, d);
}

}  // extern "C"
