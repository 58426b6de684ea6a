// The platform-kernel switch (platforms/platform_kernels.h): the
// environment read once, then an atomic the tests may set.
#include "platforms/platform_kernels.h"

#include <stdlib.h>
#include <string.h>

#include <atomic>

namespace gqa {
namespace {

// -1: not read yet; else a PlatformKernels value.
std::atomic<int> g_mode{-1};

int FromEnvironment() {
  const char* v = getenv("GQA_PLATFORM_KERNELS");
  if (v == nullptr) return static_cast<int>(PlatformKernels::kOn);
  if (strcmp(v, "off") == 0 || strcmp(v, "0") == 0)
    return static_cast<int>(PlatformKernels::kOff);
  if (strcmp(v, "exact") == 0) return static_cast<int>(PlatformKernels::kExact);
  return static_cast<int>(PlatformKernels::kOn);  // on, f16fml, unknown
}

}  // namespace

PlatformKernels PlatformKernelsMode() {
  int m = g_mode.load(std::memory_order_acquire);
  if (m < 0) {
    // Several first callers may read the environment: they agree, and a
    // SetPlatformKernels in between wins.
    int expected = -1;
    g_mode.compare_exchange_strong(expected, FromEnvironment(),
                                   std::memory_order_acq_rel);
    m = g_mode.load(std::memory_order_acquire);
  }
  return static_cast<PlatformKernels>(m);
}

const char* PlatformKernelsName() {
  switch (PlatformKernelsMode()) {
    case PlatformKernels::kOff:
      return "off";
    case PlatformKernels::kExact:
      return "exact";
    default:
      return "on";
  }
}

void SetPlatformKernels(PlatformKernels mode) {
  g_mode.store(static_cast<int>(mode), std::memory_order_release);
}

}  // namespace gqa
