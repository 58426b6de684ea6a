// The AArch64 FEAT_FHM kernels (platforms/f16_fml.h): the decode q.k and
// p.v over a block of f16 K/V rows with FMLAL / FMLAL2, and the rounding
// of the query rows. The one file built with -march=armv8.2-a+fp16+fp16fml
// (CMakeLists.txt); nothing here runs unless the CPU has FEAT_FHM
// (platforms/f16_fml.cc asks the OS).
#include "platforms/arm/f16_fml_arm.h"

#include <arm_neon.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "platforms/arm/f16_fml_arm-inl.h"
#include "platforms/f16_fml.h"

namespace gqa {
namespace {

// The V rows of keys [kk, kk + n) of the block: read head by head in p.v,
// an order the hardware prefetchers miss.
inline void PrefetchKeys(const F16FmlQkBlock& b, int64_t kk, int64_t n) {
  if (b.prefetch == nullptr) return;
  const unsigned char* p = b.prefetch + kk * b.prefetch_key_bytes;
  for (int64_t off = 0; off < n * b.prefetch_key_bytes; off += 64)
    __builtin_prefetch(p + off);
}

void QkFourKeysRows(int64_t rows, const uint16_t* q, int64_t qs,
                    const uint16_t* k, int64_t ks, int64_t dim, float* s,
                    int64_t slots) {
  switch (rows) {
    case 1:
      return fhm::QkFourKeys<1>(q, qs, k, ks, dim, s, slots);
    case 2:
      return fhm::QkFourKeys<2>(q, qs, k, ks, dim, s, slots);
    case 3:
      return fhm::QkFourKeys<3>(q, qs, k, ks, dim, s, slots);
    default:
      return fhm::QkFourKeys<4>(q, qs, k, ks, dim, s, slots);
  }
}

void QkOneKeyRows(int64_t rows, const uint16_t* q, int64_t qs,
                  const uint16_t* k, int64_t dim, float* s) {
  switch (rows) {
    case 1:
      return fhm::QkOneKey<1>(q, qs, k, dim, s);
    case 2:
      return fhm::QkOneKey<2>(q, qs, k, dim, s);
    case 3:
      return fhm::QkOneKey<3>(q, qs, k, dim, s);
    default:
      return fhm::QkOneKey<4>(q, qs, k, dim, s);
  }
}

// Keys 4 at a time (each query load serves 4 keys), then one by one; within
// a key group, heads in memory order and each head's tiles of 4 rows.
void Qk(const F16FmlQkBlock& b) {
  const int64_t tiles = (b.rows + 3) / 4;
  int64_t kk = 0;
  for (; kk + 4 <= b.keys; kk += 4) {
    PrefetchKeys(b, kk, 4);
    for (int64_t g = 0; g < b.heads; ++g) {
      const uint16_t* k = b.k + kk * b.key_stride + g * b.head_stride;
      for (int64_t t = 0; t < tiles; ++t) {
        const int64_t r0 = 4 * t, n = b.rows - r0 < 4 ? b.rows - r0 : 4;
        QkFourKeysRows(n, b.q + (g * b.rows + r0) * b.q_stride, b.q_stride, k,
                       b.key_stride, b.dim,
                       b.s + kk * b.slots + g * b.slots_per_head + r0, b.slots);
      }
    }
  }
  for (; kk < b.keys; ++kk) {
    PrefetchKeys(b, kk, 1);
    for (int64_t g = 0; g < b.heads; ++g) {
      const uint16_t* k = b.k + kk * b.key_stride + g * b.head_stride;
      for (int64_t t = 0; t < tiles; ++t) {
        const int64_t r0 = 4 * t, n = b.rows - r0 < 4 ? b.rows - r0 : 4;
        QkOneKeyRows(n, b.q + (g * b.rows + r0) * b.q_stride, b.q_stride, k,
                     b.dim, b.s + kk * b.slots + g * b.slots_per_head + r0);
      }
    }
  }
}

void PvRows(int64_t rows, const uint16_t* p16, const float* alpha,
            const uint16_t* v, int64_t vs, int64_t keys, float* acc, int64_t as,
            int64_t dim) {
  switch (rows) {
    case 1:
      return fhm::PvAllDims<1>(p16, alpha, v, vs, keys, acc, as, dim);
    case 2:
      return fhm::PvAllDims<2>(p16, alpha, v, vs, keys, acc, as, dim);
    case 3:
      return fhm::PvAllDims<3>(p16, alpha, v, vs, keys, acc, as, dim);
    case 4:
      return fhm::PvAllDims<4>(p16, alpha, v, vs, keys, acc, as, dim);
    case 5:
      return fhm::PvAllDims<5>(p16, alpha, v, vs, keys, acc, as, dim);
    case 6:
      return fhm::PvAllDims<6>(p16, alpha, v, vs, keys, acc, as, dim);
    case 7:
      return fhm::PvAllDims<7>(p16, alpha, v, vs, keys, acc, as, dim);
    default:
      return fhm::PvAllDims<8>(p16, alpha, v, vs, keys, acc, as, dim);
  }
}

// Passes of up to 8 rows and 64 keys: each pass rounds its p to f16 once
// into p16 [64][8] on the stack (1 KiB), lane r = row r (0 past the rows).
// alpha applies in a row pass's first key pass only.
constexpr int64_t kPassKeys = 64;
void Pv(const F16FmlPvBlock& b) {
  alignas(16) uint16_t p16[kPassKeys * 8];
  static const float kOnes[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  for (int64_t i0 = 0; i0 < b.rows; i0 += 8) {
    const int64_t n = b.rows - i0 < 8 ? b.rows - i0 : 8;
    for (int64_t j0 = 0; j0 < b.keys; j0 += kPassKeys) {
      const int64_t kc = b.keys - j0 < kPassKeys ? b.keys - j0 : kPassKeys;
      for (int64_t jj = 0; jj < kc; ++jj) {
        const float* pk = b.p + (j0 + jj) * b.p_key_stride + i0;
        uint16_t* dst = p16 + jj * 8;
        if (n == 8) {
          const float16x8_t h = vcombine_f16(vcvt_f16_f32(vld1q_f32(pk)),
                                             vcvt_f16_f32(vld1q_f32(pk + 4)));
          vst1q_u16(dst, vreinterpretq_u16_f16(h));
        } else {
          for (int64_t r = 0; r < 8; ++r) {
            const float16_t h = static_cast<float16_t>(r < n ? pk[r] : 0.0f);
            memcpy(dst + r, &h, 2);
          }
        }
      }
      PvRows(n, p16, j0 == 0 ? b.alpha + i0 : kOnes, b.v + j0 * b.key_stride,
             b.key_stride, kc, b.acc + i0 * b.acc_stride, b.acc_stride, b.dim);
    }
  }
}

// The largest finite |src[i]| (0 for none): NaN and Inf lanes count 0.
float MaxFinite(const float* src, int64_t n) {
  const float32x4_t inf = vdupq_n_f32(INFINITY), zero = vdupq_n_f32(0.0f);
  float32x4_t mx = zero;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const float32x4_t a = vabsq_f32(vld1q_f32(src + i));
    mx = vmaxq_f32(mx, vbslq_f32(vcltq_f32(a, inf), a, zero));
  }
  float m = vmaxvq_f32(mx);
  for (; i < n; ++i) {
    const float a = fabsf(src[i]);
    if (a < INFINITY && a > m) m = a;
  }
  return m;
}

float RoundRow(const float* src, int64_t n, uint16_t* dst) {
  const float m = MaxFinite(src, n);
  float down = 1.0f, undo = 1.0f;
  if (m > 65504.0f) {
    // m = f * 2^x, f in [0.5, 1): m * 2^-(x - 16) in [2^15, 2^16), one more
    // halving where it passes 65504. e <= 112: 2^-e is a normal float.
    int x = 0;
    frexpf(m, &x);
    int e = x - 16;
    if (ldexpf(m, -e) > 65504.0f) ++e;
    down = ldexpf(1.0f, -e);
    undo = ldexpf(1.0f, e);
  }
  const float32x4_t s = vdupq_n_f32(down);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const float32x4_t x = vmulq_f32(vld1q_f32(src + i), s);
    vst1_u16(dst + i, vreinterpret_u16_f16(vcvt_f16_f32(x)));
  }
  for (; i < n; ++i) {
    const float16_t h = static_cast<float16_t>(src[i] * down);
    memcpy(dst + i, &h, 2);
  }
  return undo;
}

const F16FmlKernels kNeonFhm = {"neon_fhm", Qk, Pv, RoundRow};

}  // namespace

const F16FmlKernels* ArmF16FmlKernels() { return &kNeonFhm; }

}  // namespace gqa
