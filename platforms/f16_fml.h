// The decode kernel's q.k and p.v on f16 K/V rows through the widening f16
// multiply-accumulate into f32 (FEAT_FHM: AArch64 FMLAL / FMLAL2), in
// per-ISA code behind one interface (Highway 1.0.3 has no such op):
// platforms/arm/. Chosen once at run time where the CPU has FEAT_FHM
// (Linux / Android: getauxval(AT_HWCAP) & HWCAP_ASIMDFHM); elsewhere the
// kernel widens the rows to f32 and uses f32 FMA (the portable path).
// The decode plan takes them in the default platform-kernel mode, not in
// `exact` or `off` (platforms/platform_kernels.h): they round q and p to
// f16, which the f32 path does not.
//
// Rounding: the scaled query rows are rounded to f16 once per work item and
// each block's probabilities p (in [0, 1]) once per p.v pass, both to
// nearest even; products and sums are f32 (the widening multiply is exact).
// A query row's f16 rounding adds up to 2^-11 relative per element. A row
// whose finite elements pass the f16 range (|q| > 65504) is first scaled by
// an exact power of two 2^-e, and its q.k multiplied back by 2^e
// (round_row returns it), so every row of every item stays on this path
// and rows never depend on each other; Inf and NaN stay Inf and NaN.
#ifndef GQA_PLATFORMS_F16_FML_H_
#define GQA_PLATFORMS_F16_FML_H_

#include <stdint.h>

namespace gqa {

// q.k of keys [0, keys) of a run of K rows, all kv heads, against every
// query row of each head's group. Elements (f16 bit patterns), not bytes.
struct F16FmlQkBlock {
  // Query rows in f16 (round_rows): row i of head g at
  // q + (g * rows + i) * q_stride, dim elements each.
  const uint16_t* q = nullptr;
  int64_t q_stride = 0;
  int64_t heads = 0;  // Hkv
  int64_t rows = 0;   // query rows per kv head (G * T)
  int64_t dim = 0;    // D: a multiple of 8
  // Key kk, head g: k + kk * key_stride + g * head_stride.
  const uint16_t* k = nullptr;
  int64_t key_stride = 0, head_stride = 0;
  int64_t keys = 0;
  // Scores out: key kk, row i of head g at s[kk * slots + g *
  // slots_per_head + i]; slots_per_head = rows rounded up to 4. The slots
  // past `rows` up to slots_per_head are written 0 (never read).
  float* s = nullptr;
  int64_t slots = 0, slots_per_head = 0;
  // Prefetched before key kk's q.k (null: none): bytes
  // [kk * prefetch_key_bytes, (kk + 1) * prefetch_key_bytes) at prefetch
  // (the block's V rows, which p.v reads head by head).
  const unsigned char* prefetch = nullptr;
  int64_t prefetch_key_bytes = 0;
};

// acc[i][d] = acc[i][d] * alpha[i] + sum_jj p[jj][i] * v[jj][d] for rows i
// in [0, rows), d in [0, dim): the contract of the portable p.v
// (PvRows in src/kernels/decode_micro_kernels-inl.h), p rounded to f16.
struct F16FmlPvBlock {
  const float* p = nullptr;  // p of row i, key jj at p[jj * p_key_stride + i]
  int64_t p_key_stride = 0;
  const float* alpha = nullptr;  // [rows]
  int64_t rows = 0;              // any count (passes of 8)
  const uint16_t* v = nullptr;   // row of key jj at v + jj * key_stride
  int64_t key_stride = 0;
  int64_t keys = 0;
  int64_t dim = 0;       // Dv: a multiple of 8
  float* acc = nullptr;  // row i at acc + i * acc_stride (f32)
  int64_t acc_stride = 0;
};

struct F16FmlKernels {
  const char* name;  // "neon_fhm"
  void (*qk)(const F16FmlQkBlock& block);
  void (*pv)(const F16FmlPvBlock& block);
  // One query row: dst [n] f16 = src [n] f32 * 2^-e (nearest even), e >= 0
  // the least that keeps every finite |src| * 2^-e <= 65504 (e = 0 for a
  // row in range; Inf and NaN elements are not counted and stay Inf and
  // NaN). Returns 2^e, the factor the row's q.k is multiplied by.
  float (*round_row)(const float* src, int64_t n, uint16_t* dst);
};

// The kernels this CPU runs, or nullptr (no FEAT_FHM, or not AArch64).
// Decided once; thread-safe. Ignores the platform-kernel switch (the plan
// asks it).
const F16FmlKernels* BestF16FmlKernels();

// Whether the FMLAL path serves these head dims (q / k: D; v: Dv).
inline bool F16FmlServesDims(int64_t dim, int64_t value_dim) {
  return dim > 0 && dim % 8 == 0 && value_dim > 0 && value_dim % 8 == 0;
}

}  // namespace gqa

#endif  // GQA_PLATFORMS_F16_FML_H_
