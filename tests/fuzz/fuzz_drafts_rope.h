// RoPE fused into the caches, for the draft-verification fuzz family
// (fuzz_drafts.h): drawn gqa_rope_params (mostly valid, some hostile) and
// positions for gqa_*_cache_append_rope and the attend's q_rope. gqa_rope
// itself (fuzzed against rope.h's rules in fuzz_rope.h) is the oracle: a
// fused call must fail where gqa_rope rejects the params or positions, and
// a successful one must equal gqa_rope + the plain call, bit for bit.
#ifndef GQA_TESTS_FUZZ_FUZZ_DRAFTS_ROPE_H_
#define GQA_TESTS_FUZZ_FUZZ_DRAFTS_ROPE_H_

#include <math.h>
#include <stdint.h>

#include <vector>

#include "gqa/rope.h"
#include "tests/fuzz/fuzz_decode.h"
#include "tests/fuzz/fuzz_drafts_cache.h"

namespace gqa_fuzz {
namespace drafts {

struct Rope {
  bool on = false;
  gqa_rope_params p = {};
  std::vector<float> weight;       // norm_weight [D]
  std::vector<int64_t> positions;  // [B, n] when given
  bool explicit_positions = false;
};

// Params for rows of D: one draw in two leaves RoPE off.
inline void DrawRope(Reader& r, int64_t D, Rope* rope) {
  rope->on = r.Bit();
  if (!rope->on) return;
  gqa_rope_params& p = rope->p;
  gqa_rope_params_init(&p);
  p.style = r.U8() % 2;
  p.scaling = r.U8() % 3;
  const int rm = r.U8() % 4;
  const int64_t half = D >= 2 ? D / 2 : 1;
  p.rotary_dim = rm == 0 ? 0 : rm == 1 ? D : 2 * (1 + r.U8() % half);
  static const double kTheta[] = {10000.0, 500000.0, 2.0, 1.5};
  static const double kFactor[] = {1.0, 8.0, 0.5, 32.0};
  p.theta = kTheta[r.U8() % 4];
  p.factor = kFactor[r.U8() % 4];
  if (r.Bit()) {
    p.norm_weight = nullptr;
  } else {
    rope->weight.resize((size_t)D);
    for (int64_t i = 0; i < D; ++i) rope->weight[i] = 0.5f + 0.01f * (i % 64);
    p.norm_weight = rope->weight.data();
    p.norm_eps = r.Bit() ? 1e-6f : 0.0f;
  }
  if (!r.hostile || r.U8() < 200) return;
  switch (r.U8() % 8) {  // one hostile value
    case 0:
      p.rotary_dim = D + 1 + (D % 2);
      break;
    case 1:
      p.rotary_dim = D % 2 ? D : D - 1;
      break;  // odd
    case 2:
      p.style = r.Bit() ? 2 : -1;
      break;
    case 3:
      p.scaling = r.Bit() ? 3 : -1;
      break;
    case 4:
      p.theta = r.Bit() ? 1.0 : NAN;
      break;
    case 5:
      p.factor = r.Bit() ? 0.0 : 1e-300;
      break;
    case 6:
      p.low_freq_factor = p.high_freq_factor;
      break;
    default:
      p.norm_eps = r.Bit() ? NAN : -1.0f;
      break;
  }
}

// Positions [B, n] (or none: the cache's own): the natural ones, random
// ones, or (hostile) one outside [0, 2^24).
inline void DrawPositions(Reader& r, Rng& rng, int64_t B, int64_t n,
                          const int64_t* natural_from, Rope* rope) {
  rope->explicit_positions = rope->on && r.Bit();
  rope->positions.clear();
  if (!rope->explicit_positions) return;
  const bool random = r.Bit();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < n; ++i)
      rope->positions.push_back(random ? (int64_t)(rng.Next() % 64)
                                       : natural_from[b] + i);
  if (r.hostile && n > 0 && r.U8() >= 192) {
    static const int64_t kBad[] = {-1, int64_t{1} << 24, INT64_MAX, INT64_MIN};
    rope->positions[rng.Next() % rope->positions.size()] = kBad[r.U8() % 4];
  }
  if (rope->positions.empty()) rope->positions.push_back(0);  // n = 0
}

// y = gqa_rope(x) for rows x [B, n, H, D] f32 or f16 into f32, at the drawn
// positions or natural_from[b] + i; false where gqa_rope rejects the params
// or positions (n = 0: the params alone, at position 0).
inline bool RopeRows(const Rope& rope, int64_t B, int64_t n, int64_t H,
                     int64_t D, const int64_t* natural_from, const void* x,
                     int32_t x_dtype, std::vector<float>* y) {
  std::vector<int64_t> pos;
  const int64_t T = n > 0 ? n : 1;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < T; ++i)
      pos.push_back(n == 0                    ? 0
                    : rope.explicit_positions ? rope.positions[b * n + i]
                                              : natural_from[b] + i);
  y->assign((size_t)(B * T * H * D), 0.0f);
  std::vector<uint16_t> zeros(y->size(), 0);
  const void* in = n > 0 ? x : zeros.data();
  const gqa_status st =
      gqa_rope(&rope.p, B, T, H, D, pos.data(), in,
               n > 0 ? x_dtype : GQA_DTYPE_F16, y->data(), GQA_DTYPE_F32);
  ExpectErrorMessage(st);
  return st == GQA_STATUS_OK;
}

// The attend with q_rope equals, bit for bit, the attend of gqa_rope's f32
// queries without it.
inline void ExpectUnfusedRope(Cache& c, const gqa_kv_attend_params& a,
                              const std::vector<float>& qr, const Tensor& out,
                              const Workspace& ws, int64_t threads,
                              bool use_pool) {
  gqa_kv_attend_params u = a;
  Tensor out2 = out;
  u.q = qr.data(), u.q_dtype = GQA_DTYPE_F32, u.out = out2.data();
  u.q_rope = nullptr, u.q_positions = nullptr;
  size_t need = 0;
  if (c.WorkspaceSize(&u, threads, &need) != GQA_STATUS_OK || need > ws.size)
    return;
  Poison(out2.bytes);
  if (c.Attend(&u, ws.ptr, ws.size, use_pool ? Pool() : nullptr) !=
      GQA_STATUS_OK)
    Finding("attend of gqa_rope's queries failed where q_rope passed");
  else if (out2.bytes != out.bytes)
    Finding("attend with q_rope differs from gqa_rope + attend");
}

}  // namespace drafts
}  // namespace gqa_fuzz

#endif  // GQA_TESTS_FUZZ_FUZZ_DRAFTS_ROPE_H_
