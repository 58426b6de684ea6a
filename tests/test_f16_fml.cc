// The f16 FMLAL kernels (platforms/f16_fml.h, FEAT_FHM): the run-time
// choice (kernel name, plan, the platform-kernel switch), the q.k and p.v
// kernels against float64 sums of the same f16-rounded q / p, and the
// decode kernel with them against the plain path and the float64 oracle
// (strided and blocked f16 caches, ring included). On a CPU without
// FEAT_FHM (x86, cortex-a72/a76 under qemu) the FMLAL checks are skipped
// with a message; the choice (none) and the plain path are still checked.
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <random>
#include <string>
#include <vector>

#include "doctest/doctest.h"
#include "platforms/f16_fml.h"
#include "platforms/platform_kernels.h"
#include "src/attention_core.h"
#include "src/half.h"
#include "tests/blocked_core_case.h"
#include "tests/core_case.h"

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

namespace gqa {
namespace test {
namespace {

// Whether the OS says FEAT_FHM (the test's own reading of HWCAP).
bool CpuHasFhm() {
#if defined(__aarch64__) && defined(__linux__)
  return (getauxval(AT_HWCAP) & (1ul << 23)) != 0;  // HWCAP_ASIMDFHM
#else
  return false;
#endif
}

// Sets the platform-kernel mode; restores the one before on scope exit.
struct PlatformSwitch {
  explicit PlatformSwitch(PlatformKernels m) : old(PlatformKernelsMode()) {
    SetPlatformKernels(m);
  }
  ~PlatformSwitch() { SetPlatformKernels(old); }
  PlatformKernels old;
};

AttentionParams DecodeShape(ElemType kv, int64_t D, int64_t Dv) {
  AttentionParams p;
  p.batch = 1, p.q_len = 1, p.kv_len = 100, p.q_heads = 8, p.kv_heads = 2;
  p.head_dim = D, p.value_dim = Dv;
  p.kv_type = kv;
  return p;
}

TEST_CASE("f16 FMLAL: chosen where the CPU has FEAT_FHM, by name, switchable") {
  const F16FmlKernels* k = BestF16FmlKernels();
  CHECK((k != nullptr) == CpuHasFhm());
  if (k == nullptr) {
    MESSAGE("no FEAT_FHM on this CPU (or not AArch64): FMLAL not chosen");
  } else {
    CHECK(strcmp(k->name, "neon_fhm") == 0);
  }
  // The default mode (GQA_PLATFORM_KERNELS unset in the suite): FMLAL.
  CHECK(PlatformKernelsMode() == PlatformKernels::kOn);
  CHECK(strcmp(PlatformKernelsName(), "on") == 0);
  {
    const AttentionPlan on = PlanAttention(DecodeShape(ElemType::kF16, 64, 64));
    REQUIRE(on.kernel == AttentionKernel::kDecode);
    CHECK(on.decode.f16_fml == k);
    // Head dims FMLAL does not serve, and other K/V types: the plain path.
    CHECK(PlanAttention(DecodeShape(ElemType::kF16, 20, 64)).decode.f16_fml ==
          nullptr);
    CHECK(PlanAttention(DecodeShape(ElemType::kF16, 64, 12)).decode.f16_fml ==
          nullptr);
    CHECK(PlanAttention(DecodeShape(ElemType::kF32, 64, 64)).decode.f16_fml ==
          nullptr);
  }
  {
    PlatformSwitch exact(PlatformKernels::kExact);
    CHECK(PlatformKernelsEnabled());
    CHECK(strcmp(PlatformKernelsName(), "exact") == 0);
    CHECK(PlanAttention(DecodeShape(ElemType::kF16, 64, 64)).decode.f16_fml ==
          nullptr);
  }
  {
    PlatformSwitch off(PlatformKernels::kOff);
    CHECK(!PlatformKernelsEnabled());
    CHECK(strcmp(PlatformKernelsName(), "off") == 0);
    CHECK(PlanAttention(DecodeShape(ElemType::kF16, 64, 64)).decode.f16_fml ==
          nullptr);
  }
  CHECK(PlatformKernelsMode() == PlatformKernels::kOn);
}

double Half(uint16_t h) { return static_cast<double>(HalfToFloat(h)); }

TEST_CASE("f16 FMLAL kernels: q.k and p.v against float64 sums") {
  const F16FmlKernels* k = BestF16FmlKernels();
  if (k == nullptr) {
    MESSAGE("no FEAT_FHM on this CPU: FMLAL kernel checks skipped");
    return;
  }
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_real_distribution<float> u01(0.0f, 1.0f);
  // round_row: nearest even; a row past the f16 range scaled by an exact
  // 2^-e (the least e), 2^e returned; Inf and NaN kept.
  {
    const float x[6] = {1.0f, 1.0f + 1.0f / 4096, -65504.0f, NAN, 3e-8f, 2.5f};
    uint16_t h[6];
    CHECK(k->round_row(x, 6, h) == 1.0f);
    for (int i = 0; i < 6; ++i)
      if (!isnan(x[i])) CHECK(h[i] == FloatToHalf(x[i]));
    CHECK(isnan(HalfToFloat(h[3])));
    const float inf[5] = {0.5f, INFINITY, -INFINITY, 3.0f, NAN};
    CHECK(k->round_row(inf, 5, h) == 1.0f);  // Inf is not a finite element
    CHECK(HalfToFloat(h[1]) == INFINITY);
    CHECK(HalfToFloat(h[2]) == -INFINITY);
    CHECK(isnan(HalfToFloat(h[4])));
    struct Big {
      float top;  // the largest |element|
      float e;    // the 2^e it needs
    };
    const Big bigs[] = {{65504.5f, 2.0f},  {65520.0f, 2.0f},
                        {131008.0f, 2.0f}, {131072.0f, 4.0f},
                        {1e36f, 0x1p104f}, {3.4e38f, 0x1p112f},
                        {-70000.0f, 2.0f}};
    for (const Big& b : bigs) {
      // Positions 0-4: the scalar tail of 5, the vector part of 4 (+1).
      for (int at = 0; at < 5; ++at) {
        float row[5] = {1.0f, -2.0f, 3.0f, INFINITY, 0.25f};
        row[at] = b.top;
        INFO("top " << b.top << " at " << at);
        for (int n : {4, 5}) {
          if (at < 5 - n) continue;  // not in the slice
          const float e = k->round_row(row + 5 - n, n, h);
          CHECK(e == b.e);
          for (int i = 0; i < n; ++i) {
            const float src = row[5 - n + i];
            const float got = HalfToFloat(h[i]);
            CHECK(got == HalfToFloat(FloatToHalf(src / e)));
            if (isfinite(src)) CHECK(fabsf(got) <= 65504.0f);
          }
        }
      }
    }
  }
  for (int64_t D : {8, 24, 64, 136})
    for (int64_t rows : {1, 2, 3, 4, 5, 8, 9})
      for (int64_t keys : {1, 4, 7}) {
        INFO("q.k D " << D << " rows " << rows << " keys " << keys);
        const int64_t H = 3, sph = (rows + 3) / 4 * 4, slots = H * sph + 4;
        const int64_t ks = H * D + 8;  // padded token stride
        std::vector<uint16_t> q(static_cast<size_t>(H * rows * D));
        std::vector<uint16_t> kr(static_cast<size_t>(keys * ks));
        for (auto& x : q) x = FloatToHalf(nd(rng));
        for (auto& x : kr) x = FloatToHalf(nd(rng));
        std::vector<float> s(static_cast<size_t>(keys * slots), NAN);
        F16FmlQkBlock b;
        b.q = q.data(), b.q_stride = D, b.heads = H, b.rows = rows, b.dim = D;
        b.k = kr.data(), b.key_stride = ks, b.head_stride = D, b.keys = keys;
        b.s = s.data(), b.slots = slots, b.slots_per_head = sph;
        k->qk(b);
        int64_t bad = 0;
        for (int64_t kk = 0; kk < keys; ++kk)
          for (int64_t g = 0; g < H; ++g)
            for (int64_t i = 0; i < sph; ++i) {
              const float got = s[kk * slots + g * sph + i];
              if (i >= rows) {
                bad += got != 0.0f;
                continue;
              }
              double want = 0, mag = 0;
              for (int64_t d = 0; d < D; ++d) {
                const double t = Half(q[(g * rows + i) * D + d]) *
                                 Half(kr[kk * ks + g * D + d]);
                want += t, mag += fabs(t);
              }
              bad += !(fabs(got - want) <= 1e-6 * mag + 1e-30);
            }
        CHECK(bad == 0);
      }
  for (int64_t Dv : {8, 16, 24, 40})
    for (int64_t rows : {1, 2, 3, 4, 5, 7, 8, 9, 12})
      for (int64_t keys : {1, 5, 64, 70}) {
        INFO("p.v Dv " << Dv << " rows " << rows << " keys " << keys);
        const int64_t ps = rows + 3, vs = Dv + 8, as = Dv + 4;
        std::vector<float> p(static_cast<size_t>(keys * ps)), alpha(rows);
        std::vector<uint16_t> v(static_cast<size_t>(keys * vs));
        std::vector<float> acc(static_cast<size_t>(rows * as));
        for (auto& x : p) x = u01(rng);
        for (auto& x : alpha) x = u01(rng);
        for (auto& x : v) x = FloatToHalf(nd(rng));
        for (auto& x : acc) x = nd(rng);
        const std::vector<float> acc0 = acc;
        F16FmlPvBlock b;
        b.p = p.data(), b.p_key_stride = ps, b.alpha = alpha.data();
        b.rows = rows, b.v = v.data(), b.key_stride = vs, b.keys = keys;
        b.dim = Dv, b.acc = acc.data(), b.acc_stride = as;
        k->pv(b);
        int64_t bad = 0;
        for (int64_t i = 0; i < rows; ++i)
          for (int64_t d = 0; d < as; ++d) {
            const float got = acc[i * as + d];
            if (d >= Dv) {  // past dim: untouched
              bad += got != acc0[i * as + d];
              continue;
            }
            double want = static_cast<double>(acc0[i * as + d]) * alpha[i];
            double mag = fabs(want);
            for (int64_t jj = 0; jj < keys; ++jj) {
              const double t =
                  Half(FloatToHalf(p[jj * ps + i])) * Half(v[jj * vs + d]);
              want += t, mag += fabs(t);
            }
            bad += !(fabs(got - want) <= 1e-6 * mag + 1e-30);
          }
        CHECK(bad == 0);
      }
}

// Largest |got - want|, and the largest error as a fraction of the
// tolerance the f16-input tests hold the f32 path to (1e-4 + 1e-4 |want|)
// and of the f16-cache tolerance FMLAL is checked against (kFmlTol, as
// test_kv_cache's f16 caches: 3e-3 + 3e-3 |want|); <= 1 passes.
constexpr double kFmlTol = 3e-3;
struct Err {
  double abs = 0, f32_tol = 0, f16_tol = 0;
  void Add(const std::vector<float>& got, const std::vector<double>& want) {
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      const double e = fabs(static_cast<double>(got[i]) - want[i]);
      abs = e > abs ? e : abs;
      const double t = e / (1e-4 + 1e-4 * fabs(want[i]));
      f32_tol = t > f32_tol ? t : f32_tol;
      const double h = e / (kFmlTol + kFmlTol * fabs(want[i]));
      f16_tol = h > f16_tol ? h : f16_tol;
    }
  }
  void Report(const char* what, const Err& plain) const {
    MESSAGE(std::string(what)
            << ": max |err| FMLAL " << abs << " (" << f32_tol << " of 1e-4, "
            << f16_tol << " of 3e-3), plain " << plain.abs << " ("
            << plain.f32_tol << " of 1e-4)");
  }
};

TEST_CASE("decode with f16 K/V: FMLAL path vs plain path vs float64 oracle") {
  const bool fhm = BestF16FmlKernels() != nullptr;
  if (!fhm) MESSAGE("no FEAT_FHM on this CPU: only the plain path runs here");
  Err with, without;
  int64_t differ = 0, fallback_differ = 0, cases = 0;
  struct Shape {
    int64_t Hq, Hkv, T, D, Dv, S;
    bool q16, head_major;
  };
  const Shape shapes[] = {
      {2, 2, 1, 64, 64, 37, false, false},     // 1 row per group
      {8, 2, 1, 128, 128, 300, false, false},  // 4
      {10, 2, 1, 64, 64, 700, true, false},    // 5
      {6, 2, 3, 40, 24, 129, false, true},     // 9, head-major
      {16, 2, 1, 128, 64, 65, false, false},   // 8, Dv != D
      {32, 2, 1, 72, 72, 33, true, false},     // 16 rows
      {4, 1, 8, 64, 64, 90, false, false},     // 32 rows
      {8, 2, 1, 20, 20, 50, false, false},     // D % 8 != 0: plain
  };
  for (const Shape& sh : shapes) {
    CoreCase c;
    c.heads(sh.Hq, sh.Hkv).head_dim(sh.D).lens(sh.T, sh.S);
    c.value_dim = sh.Dv;
    c.kv16 = true, c.q16 = sh.q16, c.head_major = sh.head_major;
    c.causal = true, c.offset = sh.S - sh.T;
    c.seed = 40 + static_cast<uint64_t>(cases++);
    INFO(c.Describe());
    const reference::AttentionResult& want = c.Reference();
    std::vector<float> on, off, plain, unused;
    {
      PlatformSwitch sw(PlatformKernels::kExact);
      REQUIRE(c.Run(1, &plain, &unused) == GQA_STATUS_OK);
    }
    {
      PlatformSwitch sw(PlatformKernels::kOn);
      REQUIRE(c.Run(1, &on, &unused) == GQA_STATUS_OK);
    }
    {
      PlatformSwitch sw(PlatformKernels::kOff);
      REQUIRE(c.Run(1, &off, &unused) == GQA_STATUS_OK);
    }
    CheckClose(on, want.out, kFmlTol, kFmlTol, "out (FMLAL)");
    CheckClose(off, want.out, 1e-4, 1e-4, "out (off)");
    const bool served = F16FmlServesDims(sh.D, sh.Dv);
    if (served) {
      with.Add(on, want.out);
    } else {
      CheckClose(on, want.out, 1e-4, 1e-4, "out (FMLAL mode, not served)");
    }
    without.Add(off, want.out);
    CHECK(memcmp(plain.data(), off.data(), on.size() * 4) == 0);
    const bool same = memcmp(on.data(), off.data(), on.size() * 4) == 0;
    if (served) differ += !same;
    if (!served) fallback_differ += !same;
  }
  CHECK(fallback_differ == 0);  // D = 20 takes the plain path either way
  if (fhm) {
    CHECK(differ > 0);  // q, p rounded to f16: the FMLAL path really ran
    with.Report("strided", without);
  } else {
    CHECK(differ == 0);
  }
}

TEST_CASE("blocked f16 cache decode: FMLAL path vs plain path vs oracle") {
  const bool fhm = BestF16FmlKernels() != nullptr;
  if (!fhm) MESSAGE("no FEAT_FHM on this CPU: only the plain path runs here");
  Err with, without;
  int64_t differ = 0, i = 0;
  for (int64_t D : {64, 128, 24})
    for (int64_t T : {1, 3})
      for (bool ring : {false, true}) {
        BlockedCase c;
        c.kv = ElemType::kF16, c.D = D, c.T = T, c.ring = ring;
        c.bt = i % 2 ? 7 : 16;
        c.Hkv = 2, c.Hq = i % 3 == 0 ? 2 : 6;  // G = 1, 3
        c.S = 112;                             // whole cache blocks of 7 and 16
        c.lengths = {ring ? 300 : 112, 60, T};
        c.q16 = i % 4 == 1;
        c.seed = 700 + static_cast<uint64_t>(i++);
        INFO(c.Describe());
        if (i == 1) {
          PlatformSwitch sw(PlatformKernels::kOff);
          Check(c);  // the plain path, every compiled target
        }
        BlockedSetup s;
        Build(c, &s);
        const reference::AttentionResult want = Reference(c, s);
        if (i == 2) {
          // FMLAL under every compiled target (NEON, SVE, SVE2 plans).
          PlatformSwitch sw(PlatformKernels::kOn);
          ForEachTarget([&](int64_t) {
            CheckClose(RunCore(c, s, 1), want.out, kFmlTol, kFmlTol,
                       "out (FMLAL, every target)");
          });
        }
        std::vector<float> on, off;
        {
          PlatformSwitch sw(PlatformKernels::kOn);
          on = RunCore(c, s, 1);
        }
        {
          PlatformSwitch sw(PlatformKernels::kOff);
          off = RunCore(c, s, 1);
        }
        CheckClose(on, want.out, kFmlTol, kFmlTol, "out (FMLAL)");
        CheckClose(off, want.out, 1e-4, 1e-4, "out (off)");
        with.Add(on, want.out);
        without.Add(off, want.out);
        differ += memcmp(on.data(), off.data(), on.size() * 4) != 0;
      }
  if (fhm) {
    CHECK(differ > 0);
    with.Report("blocked", without);
  } else {
    CHECK(differ == 0);
  }
}

}  // namespace
}  // namespace test
}  // namespace gqa
