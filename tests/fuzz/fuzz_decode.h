// Byte decoder and buffer helpers of the C ABI fuzzer: turns fuzz bytes
// into small (sometimes hostile) shapes, typed tensors and sentinel checks.
#ifndef GQA_TESTS_FUZZ_FUZZ_DECODE_H_
#define GQA_TESTS_FUZZ_FUZZ_DECODE_H_

#include <math.h>
#include <pthreadpool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <initializer_list>
#include <vector>

#include "gqa/gqa.h"
#include "src/half.h"

namespace gqa_fuzz {

typedef __int128 i128;
// A buffer of more bytes than this cannot exist (2^48 elements of 16 bytes
// at most): the library must reject the call. Between kMaxAlloc and this, the
// harness cannot run the call and skips it (the library may read any buffer
// before it rejects another): small stand-ins replace impossible buffers only.
constexpr i128 kImpossibleBytes = i128{1} << 52;
constexpr i128 kMaxAlloc = i128{1} << 20;

// Saturating product of sizes (at 2^100): -1 if a factor is negative.
inline i128 Prod(std::initializer_list<i128> factors) {
  const i128 cap = i128{1} << 100;
  i128 p = 1;
  for (i128 f : factors) {
    if (f < 0) return -1;
    if (f == 0) p = 0;
    if (p != 0) p = p > cap / f ? cap : p * f;
  }
  return p;
}

[[noreturn]] inline void Finding(const char* what) {
  fprintf(stderr, "FUZZ FINDING: %s (last error: '%s')\n", what,
          gqa_last_error_message());
  abort();
}

// Reads the fuzz bytes; past the end every read is 0.
struct Reader {
  const uint8_t* p;
  size_t n;
  bool hostile = false;  // sizes and parameters may take hostile values
  uint8_t U8() { return n ? (--n, *p++) : 0; }
  bool Bit() { return U8() & 1; }
  uint64_t U64() {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | U8();
    return v;
  }
  // Mostly lo..hi; in hostile mode 1 in 8 is from the hostile table.
  int64_t Dim(int64_t lo, int64_t hi) {
    static const int64_t kHostile[] = {0,
                                       -1,
                                       -7,
                                       INT64_MAX,
                                       INT64_MIN,
                                       int64_t{1} << 56,
                                       int64_t{1} << 62,
                                       int64_t{1} << 31,
                                       (int64_t{1} << 32) + 1,
                                       int64_t{1} << 60,
                                       int64_t{1} << 48,
                                       INT64_MAX - 1,
                                       int64_t{1} << 24,
                                       3037000500,
                                       INT64_MAX / 2 + 1,
                                       int64_t{1} << 40};
    const uint8_t b = U8();
    if (hostile && b >= 224) return kHostile[b % 16];
    const i128 span = i128{hi} - lo + 1;
    return span <= 0 ? lo : (int64_t)(lo + b % span);
  }
  float Param(float lo, float hi) {  // a float parameter, hostile sometimes
    const uint8_t b = U8();
    if (hostile && b >= 240) {
      static const float kBad[] = {NAN,   INFINITY, -INFINITY, -1.0f,
                                   1e30f, -0.0f,    1e-45f,    2.0f};
      return kBad[b % 8];
    }
    return lo + (hi - lo) * (b % 128) / 127.0f;
  }
};

// splitmix64: tensor contents come from a seed, not from fuzz bytes.
struct Rng {
  uint64_t s;
  uint64_t Next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double Uniform() { return (Next() >> 11) * (2.0 / 9007199254740992.0) - 1; }
};

// Hq = Hkv * (1 + extra), left at Hkv when that is hostile.
inline int64_t Group(int64_t kv_heads, int extra) {
  return kv_heads > 0 && kv_heads < 1000 ? kv_heads * (1 + extra) : kv_heads;
}
// GQA_FUZZ_STRICT=1: compare values even where an input is NaN/Inf
// (expected: NaN reaches the rows it touches; copies keep NaN and Inf).
inline bool Strict() {
  static const bool strict = getenv("GQA_FUZZ_STRICT") != nullptr;
  return strict;
}
inline bool ValidDtype(int32_t d) { return d == 0 || d == 1; }
inline bool ValidPolicy(int32_t p) { return p >= 0 && p <= 2; }
inline pthreadpool_t Pool() {  // two threads, made once
  static pthreadpool_t pool = pthreadpool_create(2);
  return pool;
}

inline int64_t ElemSize(int32_t dtype) { return dtype == 1 ? 2 : 4; }

// A typed tensor in one byte buffer; f16 when dtype == GQA_DTYPE_F16.
struct Tensor {
  std::vector<uint8_t> bytes;
  int32_t dtype = 0;
  int64_t elems = 0;
  void* data() { return bytes.empty() ? nullptr : bytes.data(); }
  double Get(int64_t i) const {
    if (dtype == 1) {
      uint16_t h;
      memcpy(&h, &bytes[i * 2], 2);
      return gqa::HalfToFloat(h);
    }
    float f;
    memcpy(&f, &bytes[i * 4], 4);
    return f;
  }
  void Set(int64_t i, float f) {
    if (dtype == 1) {
      const uint16_t h = gqa::FloatToHalf(f);
      memcpy(&bytes[i * 2], &h, 2);
    } else {
      memcpy(&bytes[i * 4], &f, 4);
    }
  }
};

// `elems` elements when that fits kMaxAlloc bytes, else a small stand-in
// (the call is then expected to fail). Filled with uniform [-amp, amp].
inline Tensor MakeTensor(i128 elems, int32_t dtype, Rng& rng, double amp) {
  Tensor t;
  t.dtype = dtype;
  const int64_t es = dtype == 1 ? 2 : 4;
  t.elems = (elems < 0 || Prod({elems, es}) > kMaxAlloc) ? 16 : (int64_t)elems;
  t.bytes.assign(t.elems * es, 0);
  for (int64_t i = 0; i < t.elems; ++i) t.Set(i, amp * rng.Uniform());
  return t;
}

// Maybe puts one NaN/Inf into t; returns whether it did.
inline bool MaybeNonFinite(Reader& r, Tensor& t) {
  const uint8_t b = r.U8();
  if (b < 240 || t.elems == 0) return false;
  static const float kBad[] = {NAN, INFINITY, -INFINITY};
  t.Set(r.U8() % t.elems, kBad[b % 3]);
  return true;
}

// Outputs are filled with a sentinel and compared after failed calls.
inline void Poison(std::vector<uint8_t>& b) {
  if (!b.empty()) memset(b.data(), 0xA5, b.size());
}
inline void ExpectUnchanged(const std::vector<uint8_t>& now,
                            const std::vector<uint8_t>& before,
                            const char* what) {
  if (now != before) {
    fprintf(stderr, "buffer `%s` was written by a failed call\n", what);
    Finding("failed call wrote an output");
  }
}

inline void ExpectErrorMessage(gqa_status s) {
  if (s != GQA_STATUS_OK && gqa_last_error_message()[0] == '\0')
    Finding("error status without a message");
}

// |got - want| within atol + rtol |want|; NaN expected where want is NaN.
inline void ExpectClose(double got, double want, double tol, const char* what,
                        int64_t i) {
  if ((isnan(want) && isnan(got)) || got == want) return;
  if (!(fabs(got - want) <= tol + tol * fabs(want))) {
    fprintf(stderr, "%s[%lld]: got %.9g, want %.9g (tol %g)\n", what,
            (long long)i, got, want, tol);
    Finding("result differs from the float64 reference");
  }
}

// 64-byte aligned workspace; mode 0 right, 1 misaligned, 2 one byte short
// (of the size for one thread when one_thread).
struct Workspace {
  std::vector<uint8_t> raw;
  void* ptr = nullptr;
  size_t size = 0;
  bool bad = false;  // the call must fail
  bool Make(size_t need, uint8_t mode, bool one_thread) {
    if (need > (size_t)kMaxAlloc) return false;
    raw.assign(need + 128, 0);
    uintptr_t a = ((uintptr_t)raw.data() + 63) & ~uintptr_t{63};
    size = need;
    mode %= 16;
    if (mode == 1 && need > 0) a += 4, bad = true;
    // Short of a many-thread size may still fit one thread: bad only then.
    if (mode == 2 && need > 0) size = need - 1, bad = one_thread;
    ptr = (void*)a;
    return true;
  }
  // Sizes the workspace from a size query's answer (status st, need bytes;
  // 64 bytes where the query failed, the call then fails anyway); the call
  // must fail where the workspace is bad. False: too big to fuzz.
  bool FromQuery(gqa_status st, size_t need, uint8_t mode, bool one_thread,
                 bool* must_fail) {
    ExpectErrorMessage(st);
    if (st != GQA_STATUS_OK) need = 64;
    if (!Make(need, mode, one_thread)) return false;
    *must_fail |= bad;
    return true;
  }
};

}  // namespace gqa_fuzz

#endif  // GQA_TESTS_FUZZ_FUZZ_DECODE_H_
