// RoPE part of the C ABI fuzzer (include/gqa/rope.h): gqa_rope with drawn
// styles, rotary dims, bases, scalings, norms, positions, dtypes and
// buffer placements (separate, in place, overlapping). Whether a call must
// fail is decided from the header's rules; a failed call must leave a
// message and write nothing; a successful one is compared to the float64
// oracle (src/reference/rope_ref.h) with tests/test_rope.cc's tolerances,
// a NaN in a row giving NaN where the oracle has it.
#ifndef GQA_TESTS_FUZZ_FUZZ_ROPE_H_
#define GQA_TESTS_FUZZ_FUZZ_ROPE_H_

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <vector>

#include "gqa/rope.h"
#include "src/reference/rope_ref.h"
#include "tests/fuzz/fuzz_decode.h"

namespace gqa_fuzz {
namespace rope {

// A double from a table of good values or, one in four, of bad ones (then
// *is_bad is set).
inline double Pick(Reader& r, const double* good, int n_good, const double* bad,
                   int n_bad, bool* is_bad) {
  const uint8_t b = r.U8();
  if (b >= 192 && n_bad > 0) {
    *is_bad = true;
    return bad[b % n_bad];
  }
  return good[b % n_good];
}

inline bool Overlaps(const void* a, size_t an, const void* b, size_t bn) {
  const uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
  return an > 0 && bn > 0 && x < y + bn && y < x + an;
}

}  // namespace rope

inline void FuzzRope(Reader& r, Rng& rng) {
  using namespace rope;
  static const int64_t kDims[] = {1, 2, 3, 4, 6, 8, 10, 16, 31, 32, 64, 128};
  const double kNaN = NAN, kInf = INFINITY;
  int64_t B = r.Dim(1, 2), T = r.Dim(1, 3), H = r.Dim(1, 2);
  int64_t D = kDims[r.U8() % 12];
  if (r.hostile && r.U8() >= 240) D = r.Bit() ? 4097 : r.Dim(-1, 0);
  gqa_rope_params p;
  gqa_rope_params_init(&p);
  bool bad = false, may = false;
  p.style = r.U8() % 2;
  p.scaling = r.U8() % 3;
  if (r.hostile && r.U8() >= 240) p.style = r.Bit() ? 2 : -1, bad = true;
  if (r.hostile && r.U8() >= 240) p.scaling = r.Bit() ? 3 : -1, bad = true;
  const int rm = r.U8() % 8;  // 0 (D), D, an even R <= D, or a bad one
  const int64_t half = D >= 2 ? D / 2 : 1;
  p.rotary_dim = rm < 2 ? 0 : rm == 2 ? D : 2 * (1 + r.U8() % half);
  if (rm == 7) {
    static const int64_t kBadR[] = {1, 3, -2, 0};
    p.rotary_dim = r.Bit() ? D + 2 : kBadR[r.U8() % 4];
    if (p.rotary_dim == 0) p.rotary_dim = D | 1;  // odd (D odd: R = D)
  }
  const int64_t R = p.rotary_dim == 0 ? D : p.rotary_dim;
  bad |= R <= 0 || R > D || R % 2 != 0;
  {
    const double good[] = {10000, 500000, 1e6, 1.5, 2, 1e300, 1 + 1e-12};
    const double badv[] = {1, 0.5, 0, -10, kNaN, kInf, -kInf};
    p.theta = Pick(r, good, 7, badv, 7, &bad);
  }
  if (p.scaling != GQA_ROPE_SCALING_NONE) {
    const double good[] = {1, 8, 0.5, 4, 1e-3, 32, 1e-320};
    const double badv[] = {0, -1, kNaN, kInf, -0.0};
    p.factor = Pick(r, good, 7, badv, 5, &bad);
    // The header says finite and > 0; a factor so small that positions
    // times 1 / F overflow is refused by the library: not the header's.
    if (!isfinite(16777216.0 / p.factor)) may = true;
  }
  if (p.scaling == GQA_ROPE_SCALING_LLAMA3) {
    const double lfs[] = {1, 2, 0.5}, hfs[] = {4, 8, 2.5};
    const double lbad[] = {0, -1, kNaN, kInf}, hbad[] = {kNaN, kInf, 1, 0};
    bool unused = false;  // (hf = 1 may pass with lf = 0.5): the rule below
    p.low_freq_factor = Pick(r, lfs, 3, lbad, 4, &unused);
    p.high_freq_factor = Pick(r, hfs, 3, hbad, 4, &unused);
    const double Ls[] = {8192, 4096, 131072, 16}, Lbad[] = {0, -1, kNaN, kInf};
    p.original_max_position = Pick(r, Ls, 4, Lbad, 4, &unused);
    const double lf = p.low_freq_factor, hf = p.high_freq_factor;
    bad |= !(lf > 0) || !isfinite(lf) || !isfinite(hf) || !(hf > lf) ||
           !(p.original_max_position > 0) || !isfinite(p.original_max_position);
  }
  const bool use_norm = r.Bit();
  {
    const double good[] = {1e-6, 1e-5, 0, 1, -0.0, 1e30};
    const double badv[] = {-1e-6, kNaN, kInf, -kInf};
    bool eps_bad = false;
    p.norm_eps = (float)Pick(r, good, 6, badv, 4, &eps_bad);
    bad |= use_norm && eps_bad;
  }
  int32_t xd = r.U8() % 2, yd = r.U8() % 2;
  if (r.hostile && r.U8() >= 240) yd = r.Bit() ? 2 : -1;
  bad |= B < 1 || T < 1 || H < 1 || D < 1 || D > 4096;
  const i128 elems = Prod({B, T, H, D});
  bad |= elems > (i128{1} << 48);
  // Buffers: x, y, positions and the norm weight in one arena, placed
  // apart or, by the placement, in place or overlapping.
  const int place = r.U8() % 8;  // 0-3 apart, 4 in place, 5-7 overlaps
  const bool real = B >= 1 && T >= 1 && H >= 1 && D >= 1 && elems <= 65536;
  if (!real && !bad) return;  // valid, but too big to run here
  const int64_t n = real ? (int64_t)elems : 16, ntok = real ? B * T : 2;
  const int64_t nd = D >= 1 && D <= 4097 ? D : 1;
  const size_t xb = (size_t)n * ElemSize(xd), yb = (size_t)n * ElemSize(yd);
  const size_t pb = (size_t)ntok * 8, wb = (size_t)nd * 4;
  std::vector<uint64_t> arena_store((xb + yb + pb + wb) / 8 + 16, 0);
  uint8_t* arena = (uint8_t*)arena_store.data();
  const size_t arena_bytes = arena_store.size() * 8;
  auto up8 = [](size_t x) { return (x + 7) & ~size_t{7}; };
  uint8_t* x = arena;
  uint8_t* y = x + up8(xb);
  int64_t* pos = (int64_t*)(y + up8(yb));
  float* w = (float*)((uint8_t*)pos + up8(pb));
  if (place == 4) {
    y = x, yd = xd;  // in place (the header's one allowed overlap)
  } else if (place == 5) {
    y = x + 8 * (1 + r.U8() % 2);  // shifted onto x, or x in another dtype
    if (r.Bit()) y = x, yd = ValidDtype(yd) ? 1 - xd : yd;
  } else if (place == 6) {
    pos = (int64_t*)(y + 8 * (r.U8() % 2));  // positions inside y
  } else if (place == 7 && use_norm) {
    w = (float*)(y + 4 * (r.U8() % 3));  // norm weight inside y
  }
  if ((uint8_t*)w + wb > arena + arena_bytes ||
      (uint8_t*)pos + pb > arena + arena_bytes || y + yb > arena + arena_bytes)
    return;
  bad |= !ValidDtype(xd) || !ValidDtype(yd);  // (y's as placed)
  const size_t yb_now = (size_t)n * ElemSize(yd);
  const bool same = y == x && yd == xd;
  bad |= (!same && Overlaps(y, yb_now, x, xb)) ||
         Overlaps(y, yb_now, pos, pb) ||
         (use_norm && Overlaps(y, yb_now, w, wb));
  // Contents: norm weight, positions, then x (x may hold positions' bytes).
  for (int64_t i = 0; use_norm && i < nd; ++i)
    w[i] = (float)(2.0 * rng.Uniform());
  static const int64_t kBigPos[] = {1 << 17, 1 << 20, (1 << 24) - 1, 65535};
  for (int64_t t = 0; t < ntok; ++t) {
    const uint8_t b = r.U8();
    pos[t] = b < 200 ? b : kBigPos[b % 4];
    if (b >= 250) pos[t] = b % 2 ? -1 : int64_t{1} << 24;
    if (r.hostile && b >= 248) pos[t] = b % 2 ? INT64_MIN : INT64_MAX;
    bad |= pos[t] < 0 || pos[t] >= (int64_t{1} << 24);
  }
  Tensor xt;  // x's values, read back as stored
  xt.dtype = xd, xt.elems = n;
  xt.bytes.assign(xb, 0);
  for (int64_t i = 0; i < n; ++i) xt.Set(i, (float)rng.Uniform());
  bool finite = true;
  if (r.U8() >= 232) {  // a NaN (or, strict, an Inf) in one row
    const uint8_t k = r.U8();
    xt.Set(r.U8() % n, Strict() && k % 2 ? INFINITY : NAN);
    finite = false;
  }
  {  // rows of another size: tiny (f32 mean(x^2) underflows), zero (0 / 0
     // with eps 0: NaN), large
    static const float kAmp[] = {1.0f, 1e-30f, 0.0f, 1e4f};
    const float amp = kAmp[r.U8() % 4];
    for (int64_t i = 0; amp != 1.0f && i < n; ++i)
      xt.Set(i, (float)(xt.Get(i) * amp));
  }
  // Overlapping placements: bytes written last win; x is what it holds.
  if (place == 6 || place == 7) {
    std::vector<uint8_t> keep_pos((uint8_t*)pos, (uint8_t*)pos + pb);
    std::vector<uint8_t> keep_w((uint8_t*)w, (uint8_t*)w + wb);
    memcpy(x, xt.bytes.data(), xb);
    memset(y, 0xA5, yb_now);
    memcpy(pos, keep_pos.data(), pb);
    if (use_norm) memcpy(w, keep_w.data(), wb);
  } else {
    if (!same) memset(y, 0xA5, yb_now);
    memcpy(x, xt.bytes.data(), xb);
  }
  memcpy(xt.bytes.data(), x, xb);
  p.norm_weight = use_norm ? w : nullptr;
  const void* xp = x;
  void* yp = y;
  const int64_t* pp = pos;
  const gqa_rope_params* params = &p;
  if (r.hostile && r.U8() >= 240) {
    const int k = r.U8() % 4;
    if (k == 0) xp = nullptr;
    if (k == 1) yp = nullptr;
    if (k == 2) pp = nullptr;
    if (k == 3) params = nullptr;
    bad = true;
  }
  const std::vector<uint8_t> before(arena, arena + arena_bytes);
  const gqa_status st = gqa_rope(params, B, T, H, D, pp, xp, xd, yp, yd);
  ExpectErrorMessage(st);
  if (st != GQA_STATUS_OK) {
    if (memcmp(arena, before.data(), arena_bytes) != 0)
      Finding("failed gqa_rope wrote memory");
    if (!bad && !may) {
      fprintf(stderr, "rope D=%lld R=%lld theta=%g scaling=%d place=%d\n",
              (long long)D, (long long)p.rotary_dim, p.theta, p.scaling, place);
      Finding("gqa_rope rejected a valid call");
    }
    return;
  }
  if (bad) {
    fprintf(stderr,
            "rope B=%lld T=%lld H=%lld D=%lld R=%lld style=%d scaling=%d "
            "theta=%g F=%g lf=%g hf=%g L=%g norm=%d eps=%g dt=%d%d "
            "place=%d pos0=%lld\n",
            (long long)B, (long long)T, (long long)H, (long long)D,
            (long long)p.rotary_dim, p.style, p.scaling, p.theta, p.factor,
            p.low_freq_factor, p.high_freq_factor, p.original_max_position,
            use_norm, p.norm_eps, xd, yd, place, (long long)pos[0]);
    Finding("gqa_rope accepted an invalid call");
  }
  if (may) return;  // (angles past 1e300 rad: no oracle to speak of)
  // Only y may have changed.
  for (size_t i = 0; i < arena_bytes; ++i)
    if (arena[i] != before[i] &&
        !((uint8_t*)arena + i >= y && (uint8_t*)arena + i < y + yb_now))
      Finding("gqa_rope wrote outside y");
  gqa::reference::RopeCall c;
  c.batch = B, c.tokens = T, c.heads = H, c.head_dim = D;
  c.x.resize((size_t)n);
  for (int64_t i = 0; i < n; ++i) c.x[i] = xt.Get(i);
  c.positions.assign(pos, pos + ntok);
  c.rotary_dim = p.rotary_dim;
  c.interleaved = p.style == GQA_ROPE_INTERLEAVED;
  c.theta = p.theta;
  c.scaling = p.scaling == GQA_ROPE_SCALING_LINEAR   ? "linear"
              : p.scaling == GQA_ROPE_SCALING_LLAMA3 ? "llama3"
                                                     : "none";
  c.factor = p.factor, c.low_freq_factor = p.low_freq_factor;
  c.high_freq_factor = p.high_freq_factor;
  c.original_max_position = p.original_max_position;
  if (use_norm) c.norm_weight.assign(w, w + D);
  c.eps = p.norm_eps;
  const std::vector<double> want = gqa::reference::Rope(c);
  Tensor yt;
  yt.dtype = yd, yt.elems = n;
  yt.bytes.assign(y, y + yb_now);
  if (!finite && !Strict()) {  // NaN in, NaN out where the oracle has it
    for (int64_t i = 0; i < n; ++i)
      if (isnan(want[i]) && !isnan(yt.Get(i)))
        Finding("gqa_rope: a NaN input did not reach its outputs");
  }
  // tests/test_rope.cc: f32 1e-4; an f16 y adds one rounding (2^-11).
  const double tol = yd == GQA_DTYPE_F16 ? 1e-3 : 1e-4;
  for (int64_t i = 0; i < n; ++i) {
    if (!finite && !Strict() && isnan(want[i])) continue;
    ExpectClose(yt.Get(i), want[i], tol, "rope y", i);
  }
  if (getenv("GQA_FUZZ_DEBUG"))
    fprintf(stderr, "rope: %lld values checked (D=%lld R=%lld place=%d)\n",
            (long long)n, (long long)D, (long long)R, place);
}

}  // namespace gqa_fuzz

#endif  // GQA_TESTS_FUZZ_FUZZ_ROPE_H_
