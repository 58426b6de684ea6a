// The x86 variants of the integer q.k (platforms/qk_int8.h): AVX512-VNNI
// (EVEX vpdpbusd on 256-bit vectors, AVX512VL) and AVX-VNNI (its VEX form),
// each under a function target attribute so that this file builds for the
// baseline and nothing here runs unless the CPU has the feature.
#include "platforms/x86/qk_int8_x86.h"

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "platforms/qk_int8.h"

namespace gqa {
namespace {

#define GQA_QK_NS avx512vnni
#define GQA_QK_TARGET "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni"
#define GQA_DPBUSD _mm256_dpbusd_epi32
#include "platforms/x86/qk_int8_x86-inl.h"
#undef GQA_QK_NS
#undef GQA_QK_TARGET
#undef GQA_DPBUSD

#define GQA_QK_NS avxvnni
#define GQA_QK_TARGET "avx2,fma,f16c,avxvnni"
#define GQA_DPBUSD _mm256_dpbusd_avx_epi32
#include "platforms/x86/qk_int8_x86-inl.h"
#undef GQA_QK_NS
#undef GQA_QK_TARGET
#undef GQA_DPBUSD

// cpuid leaf 7: subleaf 0 ECX bit 11 AVX512_VNNI, subleaf 1 EAX bit 4
// AVX-VNNI; the OS must save the registers (XCR0: YMM, and ZMM + opmask
// for AVX-512).
struct X86Features {
  bool avx512vnni = false, avxvnni = false;
};

X86Features Detect() {
  X86Features f;
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") &&
                    __builtin_cpu_supports("fma");  // checks XCR0 YMM too
  if (!avx2) return f;
  unsigned a = 0, b = 0, c = 0, d = 0;
  __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0));
  const unsigned max_leaf = a;
  if (max_leaf < 7) return f;
  __asm__ volatile("cpuid"
                   : "=a"(a), "=b"(b), "=c"(c), "=d"(d)
                   : "a"(7), "c"(0));
  const bool vnni512 = (c >> 11) & 1u;
  const unsigned max_sub = a;
  // AVX512F, BW, VL (cpuid 7.0 EBX bits 16, 30, 31) and XCR0 bits 5-7.
  const bool avx512 = ((b >> 16) & 1u) && ((b >> 30) & 1u) && ((b >> 31) & 1u);
  unsigned xlo = 0, xhi = 0;
  __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
  f.avx512vnni = vnni512 && avx512 && (xlo & 0xE6u) == 0xE6u;
  if (max_sub >= 1) {
    __asm__ volatile("cpuid"
                     : "=a"(a), "=b"(b), "=c"(c), "=d"(d)
                     : "a"(7), "c"(1));
    f.avxvnni = (a >> 4) & 1u;
  }
  return f;
}

const QkInt8Kernels kAvx512Vnni = {"avx512vnni", avx512vnni::QkQ8,
                                   avx512vnni::QkQ4};
const QkInt8Kernels kAvxVnni = {"avxvnni", avxvnni::QkQ8, avxvnni::QkQ4};

}  // namespace

int X86QkInt8Kernels(const QkInt8Kernels** out, int max) {
  static const X86Features f = Detect();
  int n = 0;
  if (f.avx512vnni && n < max) out[n++] = &kAvx512Vnni;
  if (f.avxvnni && n < max) out[n++] = &kAvxVnni;
  return n;
}

}  // namespace gqa
