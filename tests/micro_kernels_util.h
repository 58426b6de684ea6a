// Helpers of the micro-kernel tests (tests/test_micro_kernels*.cc): poisoned
// buffers one element off 64-byte alignment, a float64 f16 decoder written
// independently of src/half.h, sizes around the vector width, and the loop
// over every compiled and supported Highway target.
#ifndef GQA_TESTS_MICRO_KERNELS_UTIL_H_
#define GQA_TESTS_MICRO_KERNELS_UTIL_H_

#include <math.h>
#include <stdint.h>

#include <random>
#include <string>
#include <vector>

#include "doctest/doctest.h"
#include "hwy/targets.h"
#include "src/half.h"

namespace gqa {
namespace micro_test {

constexpr float kPoison = -12345.0f;

// n floats starting one float past a 64-byte boundary, poisoned.
class Floats {
 public:
  explicit Floats(int64_t n) : storage_(static_cast<size_t>(n) + 32, kPoison) {
    uintptr_t at = reinterpret_cast<uintptr_t>(storage_.data());
    const size_t skip = ((64 - at % 64) % 64) / sizeof(float) + 1;
    data_ = storage_.data() + skip;
    n_ = n;
  }
  float* data() { return data_; }
  float& operator[](int64_t i) { return data_[i]; }
  // Every element of [0, n) outside `written` still holds the poison.
  template <class Written>
  bool OnlyWritten(Written written) const {
    for (int64_t i = 0; i < n_; ++i) {
      if (!written(i) && data_[i] != kPoison) return false;
    }
    return true;
  }

 private:
  std::vector<float> storage_;
  float* data_;
  int64_t n_;
};

// n f16 values one element past a 64-byte boundary.
class Halves {
 public:
  explicit Halves(int64_t n) : storage_(static_cast<size_t>(n) + 64, 0) {
    uintptr_t at = reinterpret_cast<uintptr_t>(storage_.data());
    data_ = storage_.data() + ((64 - at % 64) % 64) / 2 + 1;
  }
  uint16_t* data() { return data_; }
  uint16_t& operator[](int64_t i) { return data_[i]; }

 private:
  std::vector<uint16_t> storage_;
  uint16_t* data_;
};

// binary16 decoded in float64, independently of src/half.h.
inline double HalfToDouble(uint16_t h) {
  const int sign = h >> 15, exp = (h >> 10) & 31, man = h & 1023;
  double v;
  if (exp == 31) {
    v = man ? NAN : INFINITY;
  } else if (exp == 0) {
    v = ldexp(man, -24);
  } else {
    v = ldexp(1024 + man, exp - 25);
  }
  return sign ? -v : v;
}

// x stored as a K/V element (f32, or f16 rounded), and the value stored.
inline void StoreElement(float x, float* dst, double* stored) {
  *dst = x;
  *stored = x;
}
inline void StoreElement(float x, uint16_t* dst, double* stored) {
  *dst = FloatToHalf(x);
  *stored = HalfToDouble(*dst);
}

// Values in [-1, 1) (fixed seed: a failure reproduces).
class Random {
 public:
  float Next() { return dist_(gen_); }
  float Unit() { return 0.5f * (dist_(gen_) + 1.0f); }  // [0, 1)
  void Fill(float* x, int64_t n) {
    for (int64_t i = 0; i < n; ++i) x[i] = Next();
  }

 private:
  std::mt19937 gen_{20261202};
  std::uniform_real_distribution<float> dist_{-1.0f, 1.0f};
};

// Sizes around the vector width N: 1, N-1, N, N+1, 2N+3, 3N (>= 1).
inline std::vector<int64_t> SizesAround(int64_t N) {
  std::vector<int64_t> sizes;
  for (int64_t n : {int64_t{1}, N - 1, N, N + 1, 2 * N + 3, 3 * N}) {
    if (n >= 1) sizes.push_back(n);
  }
  return sizes;
}

// Runs fn on every target compiled here and supported by the CPU (the
// static target where Highway detects none, as on Debian's armhf).
template <class Fn>
void OnEveryTarget(Fn fn) {
  std::vector<int64_t> targets = hwy::SupportedAndGeneratedTargets();
  if (targets.empty()) targets.push_back(HWY_STATIC_TARGET);
  for (int64_t target : targets) {
    hwy::SetSupportedTargetsForTest(target);
    const std::string name = hwy::TargetName(target);
    CAPTURE(name);
    fn();
  }
  hwy::SetSupportedTargetsForTest(0);
}

}  // namespace micro_test
}  // namespace gqa

#endif  // GQA_TESTS_MICRO_KERNELS_UTIL_H_
