// Integer q.k of quantized (q8 / q4) key rows for the decode kernel, in
// per-ISA code behind one interface (Highway 1.0.3 has no int8 dot product):
// AVX512-VNNI and AVX-VNNI `vpdpbusd` on x86 (platforms/x86/), SDOT on
// AArch64 with FEAT_DotProd (platforms/arm/qk_int8_arm.cc). Chosen once
// at run time from the CPU; where there is none, the kernel dequantizes K
// to f32 instead (the portable Highway path).
//
// The integer path quantizes each (scaled) query row to int8 with one f32
// scale per row: c = round_even(q * (127 / max|q|)), s_q = max|q| / 127, so
// q ~ s_q * c with an error of at most s_q / 2 per element. A key row's
// score is then s_q * s_k * sum_d c_d k_d (q8; q4 per group of 32 with the
// group's scale), with the integer sum exact. A row with a NaN or an
// infinity gets s_q = NaN: its scores are NaN, as in f32.
#ifndef GQA_PLATFORMS_QK_INT8_H_
#define GQA_PLATFORMS_QK_INT8_H_

#include <stdint.h>

namespace gqa {

// One call: the keys [0, keys) of a run inside one cache block, all kv
// heads, against every query row of each head's group.
struct QkInt8Block {
  // Prepared query rows (prepare_*), row i of head g at
  // q + (g * rows + i) * q_bytes.
  const unsigned char* q = nullptr;
  int64_t q_bytes = 0;
  // s_q of row i of head g at q_scale[g * slots_per_head + i]; 0 in the
  // slots past `rows` up to the next multiple of 4.
  const float* q_scale = nullptr;
  int64_t heads = 0;  // Hkv
  int64_t rows = 0;   // query rows per kv head (G * T), <= 32
  int64_t dim = 0;    // D: a multiple of 32 (q8) or of 64 (q4)
  // Codes of key kk, head g at codes + kk * key_bytes + g * row_bytes; its
  // f16 scales at scales + kk * scale_key_bytes + g * scale_row_bytes.
  const unsigned char* codes = nullptr;
  int64_t row_bytes = 0, key_bytes = 0;
  const unsigned char* scales = nullptr;
  int64_t scale_row_bytes = 0, scale_key_bytes = 0;
  int64_t keys = 0;
  // Scores out: key kk, row i of head g at
  // s[kk * slots + g * slots_per_head + i]; slots_per_head a multiple of 4
  // >= rows. Slots past `rows` up to the next multiple of 4 are written
  // too (0, or NaN where the key's scale is NaN; never read).
  float* s = nullptr;
  int64_t slots = 0, slots_per_head = 0;
  // Prefetched during key kk's q.k (null: none): bytes
  // [kk * prefetch_key_bytes, (kk + 1) * prefetch_key_bytes) at prefetch,
  // the block's V rows, which p.v then reads head by head (an order the
  // hardware prefetchers miss).
  const unsigned char* prefetch = nullptr;
  int64_t prefetch_key_bytes = 0;
};

struct QkInt8Kernels {
  const char* name;  // "avx512vnni", "avxvnni", "neon_dotprod"
  void (*qk_q8)(const QkInt8Block& block);
  void (*qk_q4)(const QkInt8Block& block);
};

// The best kernels this CPU runs, or nullptr (no integer dot product, or
// none compiled for this architecture). Decided once; thread-safe.
const QkInt8Kernels* BestQkInt8Kernels();
// Every variant this CPU runs, best first (tests force each): up to 4.
int AvailableQkInt8Kernels(const QkInt8Kernels** out, int max);

// The prepared row (the same for every variant): s_q (f32) at 0, the q8
// correction -128 * sum(c) (int32) at 4; from kQkCodes the D codes in
// order (q8), then per 64 elements c the 32 bytes q_lo = q[64c + 0..15],
// q[64c + 32..47] and the 32 bytes q_hi = q[64c + 16..31], q[64c + 48..63]
// (q4: the order of a q4 key's low and high nibbles), then per 64 elements
// 8 int32 start sums: -8 * (sum of the codes of group 2c) in lane 0, of group
// 2c + 1 in lane 4, else 0.
constexpr int64_t kQkCodes = 64;
inline int64_t QkInt8PreparedBytes(int64_t dim) {
  return (kQkCodes + 2 * dim + dim / 2 + 63) / 64 * 64;
}
// Quantizes q [dim] (dim a multiple of 32; of 64 with q4) into the
// prepared row; returns s_q. q8 and q4 fill their own parts.
float PrepareQkInt8Row(const float* q, int64_t dim, bool q4,
                       unsigned char* dst);

// Whether the integer path serves a head dim for q8 / q4 keys.
inline bool QkInt8ServesDim(bool q4, int64_t dim) {
  return dim > 0 && dim % (q4 ? 64 : 32) == 0;
}

}  // namespace gqa

#endif  // GQA_PLATFORMS_QK_INT8_H_
