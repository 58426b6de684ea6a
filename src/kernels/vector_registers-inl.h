// The size of the vector register file of the current Highway target: the
// one fact every kernel's register tiles are derived from.
//
// A rule per architecture, not a list of target names, so that a target
// added later gets the right answer without anyone editing a list:
//   x86-64: the AVX-512 targets (HWY_AVX3 and every better one: AVX3_DL and
//           newer) have 32 zmm registers; SSSE3, SSE4 and AVX2 have 16 xmm
//           or ymm. x86-32 has 8 whatever the target.
//   AArch64: 32 (NEON v0-v31; SVE z0-z31).
//   ARMv7: 16 (q0-q15).
//   SCALAR and EMU128 hold their "vectors" in the host's floating-point or
//           vector registers (EMU128 is an array of 4 lanes the compiler
//           keeps in registers): they get the count of the architecture
//           they are compiled for by the same rule as the lines above, i.e.
//           x86-64's baseline 16 and AArch64's 32.
//   WASM: the engine maps SIMD values onto the host's registers, at least
//           16 on every host it runs on: 16 (a 32-register tile would spill
//           on x86-64 hosts).
//   RVV: 32 vector registers. PPC (VSX): 64 registers, 32 of them Altivec.
//   Anything else: 16, the safe side (a tile too small costs a little
//           speed; one too large spills every accumulator).

#if defined(GQA_SRC_KERNELS_VECTOR_REGISTERS_INL_H_) == \
    defined(HWY_TARGET_TOGGLE)
#ifdef GQA_SRC_KERNELS_VECTOR_REGISTERS_INL_H_
#undef GQA_SRC_KERNELS_VECTOR_REGISTERS_INL_H_
#else
#define GQA_SRC_KERNELS_VECTOR_REGISTERS_INL_H_
#endif

#include "hwy/highway.h"

// No HWY_BEFORE_NAMESPACE: constants only (clang warns on a target
// attribute region without functions).
namespace gqa {
namespace HWY_NAMESPACE {

#if HWY_ARCH_X86_64
// Highway numbers x86 targets with smaller values for wider ISAs; SCALAR
// and EMU128 are larger than every x86 target, so they count as 16.
constexpr int kVectorRegisters = HWY_TARGET <= HWY_AVX3 ? 32 : 16;
#elif HWY_ARCH_X86_32
constexpr int kVectorRegisters = 8;
#elif HWY_ARCH_ARM_A64
constexpr int kVectorRegisters = 32;
#elif HWY_ARCH_ARM_V7
constexpr int kVectorRegisters = 16;
#elif HWY_ARCH_RVV || HWY_ARCH_PPC
constexpr int kVectorRegisters = 32;
#else  // WASM and anything else
constexpr int kVectorRegisters = 16;
#endif

}  // namespace HWY_NAMESPACE
}  // namespace gqa

// GQA_ARM_UNROLL(n) before a micro-kernel's inner loop: GCC on AArch64
// NEON unrolls it n times (n: a literal; GCC 12 takes no template-dependent
// count), so that an in-order core (Cortex-A55) overlaps one step's
// loads with the other's FMA (issue 14, llvm-mca). Nothing elsewhere (SVE:
// no gain on the A64FX model).
#undef GQA_ARM_UNROLL
#if HWY_TARGET == HWY_NEON && HWY_ARCH_ARM_A64 && defined(__GNUC__) && \
    !defined(__clang__)
#define GQA_ARM_PRAGMA(x) _Pragma(#x)
#define GQA_ARM_UNROLL(n) GQA_ARM_PRAGMA(GCC unroll n)
#else
#define GQA_ARM_UNROLL(n)
#endif

// GQA_ARM_ISSUE_ORDER() between the groups of a software-pipelined
// micro-kernel loop (a load and the FMA it issues beside): an empty volatile
// asm, which GCC's instruction schedulers do not move anything across. GCC
// 12's generic AArch64 tuning has no pipeline model and gathers a loop's
// loads into one run, where the in-order Cortex-A55 issues them one a cycle
// beside nothing (issue 14, llvm-mca). GQA_ARM_ISSUE_HERE(x) also makes
// the integer x (a pointer, a counter) computed at that point and opaque
// after it, so that an add issues where the source puts it (ALU latency 3
// on the A55 model: not just before the load or branch that reads it).
// Neither emits an instruction; AArch64 NEON with GCC only, nothing
// elsewhere.
#undef GQA_ARM_ISSUE_ORDER
#undef GQA_ARM_ISSUE_HERE
#if HWY_TARGET == HWY_NEON && HWY_ARCH_ARM_A64 && defined(__GNUC__) && \
    !defined(__clang__)
#define GQA_ARM_ISSUE_ORDER() __asm__ __volatile__("")
#define GQA_ARM_ISSUE_HERE(x) __asm__ __volatile__("" : "+r"(x))
#else
#define GQA_ARM_ISSUE_ORDER()
#define GQA_ARM_ISSUE_HERE(x)
#endif

#endif  // include guard per target
