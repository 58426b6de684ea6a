// The integer q.k kernels of platforms/qk_int8.h for one x86 variant,
// included once per variant by qk_int8_x86.cc with
//   GQA_QK_NS      the namespace of the variant's functions,
//   GQA_QK_TARGET  its target attribute string,
//   GQA_DPBUSD     its u8 x s8 -> s32 dot product of 256-bit vectors.
// 256-bit vectors throughout: on Zen4 two threads stream 57 GB/s with
// 256-bit loads and 42 GB/s with 512-bit ones, and vpdpbusd has the same
// MAC rate at either width there. (No include guard: one body per variant.)

namespace GQA_QK_NS {

#define GQA_QK_FN __attribute__((target(GQA_QK_TARGET))) static inline

// The integer sums of four 8-lane vectors: lane i = sum of a_i.
GQA_QK_FN __m128i Sum4(__m256i a0, __m256i a1, __m256i a2, __m256i a3) {
  const __m256i h =
      _mm256_hadd_epi32(_mm256_hadd_epi32(a0, a1), _mm256_hadd_epi32(a2, a3));
  return _mm_add_epi32(_mm256_castsi256_si128(h),
                       _mm256_extracti128_si256(h, 1));
}
GQA_QK_FN __m128 Sum4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
  const __m256 h =
      _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
  return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

GQA_QK_FN __m256i Load(const unsigned char* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

GQA_QK_FN float HalfAt(const unsigned char* p) {
  uint16_t h;
  memcpy(&h, p, 2);
  return _cvtsh_ss(h);  // NaN stays NaN
}

// dst[0, 4) = scale * (sum_d q_r[d] k[d]) for the NR (<= 4) prepared q8
// rows at q (q_bytes apart); lanes past NR get 0 * scale.
template <int NR>
GQA_QK_FN void Q8Rows(const unsigned char* q, int64_t q_bytes,
                      const unsigned char* k, int64_t dim, __m128 scale,
                      float* dst) {
  // k ^ 0x80 = k + 128 as an unsigned byte; the rows' sums are corrected
  // by -128 * sum(c), stored with the row, as the accumulators' start.
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  int32_t corr[4] = {0, 0, 0, 0};
  for (int r = 0; r < NR; ++r) memcpy(&corr[r], q + r * q_bytes + 4, 4);
  a0 = _mm256_setr_epi32(corr[0], 0, 0, 0, 0, 0, 0, 0);
  if (NR > 1) a1 = _mm256_setr_epi32(corr[1], 0, 0, 0, 0, 0, 0, 0);
  if (NR > 2) a2 = _mm256_setr_epi32(corr[2], 0, 0, 0, 0, 0, 0, 0);
  if (NR > 3) a3 = _mm256_setr_epi32(corr[3], 0, 0, 0, 0, 0, 0, 0);
  const unsigned char* c = q + kQkCodes;
  for (int64_t d = 0; d < dim; d += 32) {
    const __m256i x = _mm256_xor_si256(Load(k + d), flip);
    a0 = GQA_DPBUSD(a0, x, Load(c + d));
    if (NR > 1) a1 = GQA_DPBUSD(a1, x, Load(c + q_bytes + d));
    if (NR > 2) a2 = GQA_DPBUSD(a2, x, Load(c + 2 * q_bytes + d));
    if (NR > 3) a3 = GQA_DPBUSD(a3, x, Load(c + 3 * q_bytes + d));
  }
  _mm_storeu_ps(dst, _mm_mul_ps(_mm_cvtepi32_ps(Sum4(a0, a1, a2, a3)), scale));
}

// As Q8Rows for q4 keys: per 64 elements (32 bytes: groups 2c, 2c + 1),
// low nibbles against the rows' q_lo and high nibbles against q_hi, from
// the rows' start vectors (-8 * sum of q over each group in its lane 0 /
// 4); the integer lanes of each group times its scale, summed in f32.
template <int NR>
GQA_QK_FN void Q4Rows(const unsigned char* q, int64_t q_bytes,
                      const unsigned char* k, const unsigned char* k_scales,
                      int64_t dim, __m128 scale, float* dst) {
  const __m256i low = _mm256_set1_epi8(0x0F);
  const __m256i spread = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
  __m256 f0 = _mm256_setzero_ps(), f1 = f0, f2 = f0, f3 = f0;
  const unsigned char* c = q + kQkCodes + dim;         // q_lo, q_hi per chunk
  const unsigned char* init = q + kQkCodes + 2 * dim;  // 8 int32 per chunk
  for (int64_t ch = 0; ch < dim / 64; ++ch) {
    const __m256i x = Load(k + 32 * ch);
    const __m256i lo = _mm256_and_si256(x, low);
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), low);
    int32_t two;
    memcpy(&two, k_scales + 4 * ch, 4);
    const __m256 sv = _mm256_permutevar8x32_ps(
        _mm256_castps128_ps256(_mm_cvtph_ps(_mm_cvtsi32_si128(two))), spread);
#define GQA_Q4_ROW(r, f)                                 \
  if (NR > r) {                                          \
    const unsigned char* cr = c + r * q_bytes + 64 * ch; \
    __m256i a = Load(init + r * q_bytes + 32 * ch);      \
    a = GQA_DPBUSD(a, lo, Load(cr));                     \
    a = GQA_DPBUSD(a, hi, Load(cr + 32));                \
    f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a), sv, f);   \
  }
    GQA_Q4_ROW(0, f0)
    GQA_Q4_ROW(1, f1)
    GQA_Q4_ROW(2, f2)
    GQA_Q4_ROW(3, f3)
#undef GQA_Q4_ROW
  }
  _mm_storeu_ps(dst, _mm_mul_ps(Sum4(f0, f1, f2, f3), scale));
}

template <bool kQ4>
__attribute__((target(GQA_QK_TARGET))) void QkBlock(const QkInt8Block& b) {
  for (int64_t kk = 0; kk < b.keys; ++kk) {
    const unsigned char* key = b.codes + kk * b.key_bytes;
    const unsigned char* key_scales = b.scales + kk * b.scale_key_bytes;
    float* s = b.s + kk * b.slots;
    if (b.prefetch != nullptr) {
      const char* pf =
          reinterpret_cast<const char*>(b.prefetch) + kk * b.prefetch_key_bytes;
      for (int64_t off = 0; off < b.prefetch_key_bytes; off += 64)
        _mm_prefetch(pf + off, _MM_HINT_T0);
    }
    for (int64_t g = 0; g < b.heads; ++g) {
      const unsigned char* k = key + g * b.row_bytes;
      const unsigned char* ks = key_scales + g * b.scale_row_bytes;
      // q8: s_q * s_k per row; q4: s_q (the group scales come inside).
      const __m128 sk = _mm_set1_ps(kQ4 ? 1.0f : HalfAt(ks));
      for (int64_t i = 0; i < b.rows; i += 4) {
        const int64_t slot = g * b.slots_per_head + i;
        const __m128 scale = _mm_mul_ps(_mm_loadu_ps(b.q_scale + slot), sk);
        const unsigned char* q = b.q + (g * b.rows + i) * b.q_bytes;
        const int64_t n = b.rows - i;
#define GQA_QK_CASE(NR)                                      \
  if (kQ4) {                                                 \
    Q4Rows<NR>(q, b.q_bytes, k, ks, b.dim, scale, s + slot); \
  } else {                                                   \
    Q8Rows<NR>(q, b.q_bytes, k, b.dim, scale, s + slot);     \
  }
        if (n >= 4) {
          GQA_QK_CASE(4)
        } else if (n == 3) {
          GQA_QK_CASE(3)
        } else if (n == 2) {
          GQA_QK_CASE(2)
        } else {
          GQA_QK_CASE(1)
        }
#undef GQA_QK_CASE
      }
    }
  }
}

void QkQ8(const QkInt8Block& b) { QkBlock<false>(b); }
void QkQ4(const QkInt8Block& b) { QkBlock<true>(b); }

#undef GQA_QK_FN

}  // namespace GQA_QK_NS
