// The tolerance of f16 K/V in the tests: the f32 path's, or that of FMLAL
// (platforms/f16_fml.h: q and p rounded to f16) where this run's decode
// plans may take it: the default platform-kernel mode on a FEAT_FHM CPU.
#ifndef GQA_TESTS_F16_KV_TOL_H_
#define GQA_TESTS_F16_KV_TOL_H_

#include "platforms/f16_fml.h"
#include "platforms/platform_kernels.h"

namespace gqa {
namespace test {

// Whether an f16-K/V decode plan made now may take FMLAL.
inline bool FmlalMayRun() {
  return PlatformKernelsMode() == PlatformKernels::kOn &&
         BestF16FmlKernels() != nullptr;
}

// `exact` (the f32 path's tolerance), or 3e-3 (the f16-cache tolerance,
// which FMLAL's errors stay inside: bench/PERFORMANCE.md) for f16 K/V
// where FMLAL may run.
inline double F16KvTol(bool kv16, double exact) {
  return kv16 && FmlalMayRun() && exact < 3e-3 ? 3e-3 : exact;
}

}  // namespace test
}  // namespace gqa

#endif  // GQA_TESTS_F16_KV_TOL_H_
