// The blocked-K/V core test case (KV cache v2): pools of f32, f16, q8 and
// q4 blocks written in the documented layout (random codes and scales),
// shuffled and shared blocks, table entries -1 wherever no slot may be
// read (the pool sits between PROT_NONE pages, so such a read faults),
// the core run on every target and the float64 reference on the
// dequantized K/V. Used by test_blocked_core and test_qk_int8.
#ifndef GQA_TESTS_BLOCKED_CORE_CASE_H_
#define GQA_TESTS_BLOCKED_CORE_CASE_H_

#include <math.h>
#include <pthreadpool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "doctest/doctest.h"
#include "platforms/qk_int8.h"
#include "src/attention_core.h"
#include "src/half.h"
#include "src/reference/attention_ref.h"
#include "src/reference/f16_util.h"
#include "tests/check.h"
#include "tests/f16_kv_tol.h"
#include "tests/layer_case.h"

namespace gqa {
namespace test {
namespace {

// Bytes between two inaccessible guard regions: a read before data() or
// past data() + size faults. size must be a multiple of the page size.
class GuardedBytes {
 public:
  GuardedBytes(size_t size, size_t guard) : size_(size), guard_(guard) {
    total_ = size + 2 * guard;
    void* m = mmap(nullptr, total_, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(m != MAP_FAILED);
    base_ = static_cast<unsigned char*>(m);
    REQUIRE(mprotect(base_, guard, PROT_NONE) == 0);
    REQUIRE(mprotect(base_ + guard + size, guard, PROT_NONE) == 0);
  }
  ~GuardedBytes() { munmap(base_, total_); }
  GuardedBytes(const GuardedBytes&) = delete;
  GuardedBytes& operator=(const GuardedBytes&) = delete;
  unsigned char* data() { return base_ + guard_; }
  size_t size() const { return size_; }

 private:
  unsigned char* base_ = nullptr;
  size_t size_, guard_, total_ = 0;
};

size_t RoundUpTo(size_t x, size_t m) { return (x + m - 1) / m * m; }

const char* TypeName(ElemType t) {
  static const char* const kNames[] = {"f32", "f16", "q8", "q4"};
  return kNames[static_cast<int>(t)];
}

struct BlockedCase {
  int64_t B = 3, T = 1, Hq = 8, Hkv = 2, D = 64, S = 100, bt = 16;
  ElemType kv = ElemType::kF32;
  bool q16 = false, out16 = false, causal = true, ring = false;
  bool uniform = false, mask_batch1 = false;  // key mask closes batch 1
  int64_t window = 0;
  std::vector<int64_t> lengths;  // [B] tokens appended
  uint64_t seed = 1;
  // NaN scale: (kind, batch-0 slot, kv head); kind 1 = K scale, 2 = V.
  int nan_kind = 0;
  int64_t nan_slot = 0, nan_head = 0;
  bool int8_qk = false;  // AttentionParams::qk_int8 (q8 / q4 decode)

  std::string Describe() const {
    char buf[300];
    snprintf(buf, sizeof(buf),
             "kv %s B%lld T%lld Hq%lld Hkv%lld D%lld S%lld bt%lld q16 %d "
             "out16 %d causal %d ring %d win %lld uniform %d nan %d seed %llu",
             TypeName(kv), (long long)B, (long long)T, (long long)Hq,
             (long long)Hkv, (long long)D, (long long)S, (long long)bt, q16,
             out16, causal, ring, (long long)window, uniform, nan_kind,
             (unsigned long long)seed);
    std::string s = buf;
    s += " lengths";
    for (int64_t l : lengths) s += " " + std::to_string(l);
    return s;
  }
};

// A built case: the pool, the table, the inputs and the reference.
struct BlockedSetup {
  std::vector<float> q;  // [B,T,Hq,D] logical (rounded when q16)
  std::vector<unsigned char> q_raw;
  std::vector<int32_t> table;
  std::vector<int64_t> offsets, lengths;
  std::vector<uint8_t> key_mask;
  KvBlocks kb;
  std::unique_ptr<GuardedBytes> pool;
  std::vector<double> k, v;  // [B,S,Hkv,D] dequantized, 0 where unreadable
};

int64_t RowBytes(ElemType t, int64_t D) {
  return t == ElemType::kF32   ? 4 * D
         : t == ElemType::kF16 ? 2 * D
         : t == ElemType::kQ8  ? D
                               : D / 2;
}
int64_t RowScales(ElemType t, int64_t D) {
  return t == ElemType::kQ8 ? 1 : t == ElemType::kQ4 ? D / 32 : 0;
}

// Element d of a row as the cache defines it (the test's own decoder).
double RowElement(ElemType t, const unsigned char* codes,
                  const unsigned char* scales, int64_t d) {
  uint16_t h;
  switch (t) {
    case ElemType::kF32: {
      float x;
      memcpy(&x, codes + 4 * d, 4);
      return x;
    }
    case ElemType::kF16:
      memcpy(&h, codes + 2 * d, 2);
      return HalfToFloat(h);
    case ElemType::kQ8:
      memcpy(&h, scales, 2);
      return static_cast<double>(
          static_cast<float>(reinterpret_cast<const int8_t*>(codes)[d]) *
          HalfToFloat(h));
    case ElemType::kQ4: {
      const int64_t g = d / 32, i = d % 32;
      const unsigned byte = codes[16 * g + i % 16];
      const int code = static_cast<int>(i < 16 ? byte & 15u : byte >> 4) - 8;
      memcpy(&h, scales + 2 * g, 2);
      return static_cast<double>(static_cast<float>(code) * HalfToFloat(h));
    }
  }
  return 0.0;
}

void Build(const BlockedCase& c, BlockedSetup* s) {
  std::mt19937_64 rng(c.seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const int64_t rows = c.bt * c.Hkv;
  const int64_t rb = RowBytes(c.kv, c.D), rs = RowScales(c.kv, c.D);
  KvBlocks& kb = s->kb;
  kb.block_tokens = c.bt;
  kb.k_row_bytes = kb.v_row_bytes = rb;
  kb.k_row_scales = kb.v_row_scales = rs;
  kb.k_codes = 0;
  kb.k_scales = static_cast<int64_t>(RoundUpTo(rows * rb, 16));
  kb.v_codes = static_cast<int64_t>(RoundUpTo(kb.k_scales + rows * rs * 2, 16));
  kb.v_scales = static_cast<int64_t>(RoundUpTo(kb.v_codes + rows * rb, 16));
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  // Whole pages per block: block -1 lies wholly in the guard before it.
  kb.block_bytes = static_cast<int64_t>(
      RoundUpTo(static_cast<size_t>(kb.v_scales + rows * rs * 2), page));
  const int64_t columns = (c.S + c.bt - 1) / c.bt;
  const int64_t blocks = c.B * columns + 3;
  s->pool.reset(new GuardedBytes(blocks * kb.block_bytes, kb.block_bytes));
  unsigned char* pool = s->pool->data();
  // Random codes and scales in every block.
  std::uniform_int_distribution<int> q8(-127, 127), q4(-7, 7);
  std::uniform_real_distribution<float> sc8(0.004f, 0.02f), sc4(0.05f, 0.3f);
  for (int64_t blk = 0; blk < blocks; ++blk) {
    unsigned char* base = pool + blk * kb.block_bytes;
    for (int64_t codes : {kb.k_codes, kb.v_codes}) {
      unsigned char* p = base + codes;
      for (int64_t r = 0; r < rows; ++r, p += rb) {
        for (int64_t d = 0; d < c.D; ++d) {
          if (c.kv == ElemType::kF32) {
            const float x = 2.0f * u(rng);
            memcpy(p + 4 * d, &x, 4);
          } else if (c.kv == ElemType::kF16) {
            const uint16_t h = FloatToHalf(2.0f * u(rng));
            memcpy(p + 2 * d, &h, 2);
          } else if (c.kv == ElemType::kQ8) {
            p[d] = static_cast<unsigned char>(static_cast<int8_t>(q8(rng)));
          } else if (d % 32 < 16) {
            const int64_t g = d / 32, i = d % 32;
            p[16 * g + i] = static_cast<unsigned char>((q4(rng) + 8) |
                                                       ((q4(rng) + 8) << 4));
          }
        }
      }
    }
    for (int64_t scales : {kb.k_scales, kb.v_scales}) {
      for (int64_t i = 0; i < rows * rs; ++i) {
        const uint16_t h =
            FloatToHalf(c.kv == ElemType::kQ8 ? sc8(rng) : sc4(rng));
        memcpy(base + scales + 2 * i, &h, 2);
      }
    }
  }
  // Table: columns holding readable slots get blocks in shuffled order
  // (batch 1 shares batch 0's first block); all others -1, two spare
  // columns included.
  std::vector<int32_t> ids(static_cast<size_t>(blocks));
  for (int64_t i = 0; i < blocks; ++i) ids[i] = static_cast<int32_t>(i);
  std::shuffle(ids.begin(), ids.end(), rng);
  kb.table_stride = columns + 2;
  s->table.assign(static_cast<size_t>(c.B * kb.table_stride), -1);
  s->lengths = c.lengths;
  std::vector<int64_t> readable(c.B);
  size_t next = 0;
  for (int64_t b = 0; b < c.B; ++b) {
    readable[b] = std::min(c.lengths[b], c.S);
    const int64_t used = (readable[b] + c.bt - 1) / c.bt;
    for (int64_t col = 0; col < used; ++col)
      s->table[b * kb.table_stride + col] = ids[next++];
  }
  if (c.B > 1 && s->table[0] >= 0 && s->table[kb.table_stride] >= 0)
    s->table[kb.table_stride] = s->table[0];
  kb.table = s->table.data();
  kb.pool = pool;
  // A NaN scale in batch 0's block (shared with batch 1 at column 0).
  if (c.nan_kind != 0) {
    REQUIRE(rs > 0);
    const int64_t j = c.nan_slot;
    unsigned char* blk =
        pool + s->table[j / c.bt] * static_cast<int64_t>(kb.block_bytes);
    const int64_t rh = (j % c.bt) * c.Hkv + c.nan_head;
    const uint16_t nan16 = 0x7E00;
    memcpy(blk + (c.nan_kind == 1 ? kb.k_scales : kb.v_scales) + rh * rs * 2,
           &nan16, 2);
  }
  // The dequantized K/V the reference sees.
  const int64_t n = c.B * c.S * c.Hkv * c.D;
  s->k.assign(n, 0.0);
  s->v.assign(n, 0.0);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t j = 0; j < readable[b]; ++j) {
      const unsigned char* blk =
          pool + s->table[b * kb.table_stride + j / c.bt] * kb.block_bytes;
      for (int64_t g = 0; g < c.Hkv; ++g) {
        const int64_t rh = (j % c.bt) * c.Hkv + g;
        for (int64_t d = 0; d < c.D; ++d) {
          const size_t at =
              static_cast<size_t>(((b * c.S + j) * c.Hkv + g) * c.D + d);
          s->k[at] = RowElement(c.kv, blk + kb.k_codes + rh * rb,
                                blk + kb.k_scales + rh * rs * 2, d);
          s->v[at] = RowElement(c.kv, blk + kb.v_codes + rh * rb,
                                blk + kb.v_scales + rh * rs * 2, d);
        }
      }
    }
  // Queries: the newest T tokens of each sequence.
  s->q.resize(static_cast<size_t>(c.B * c.T * c.Hq * c.D));
  for (float& x : s->q) x = reference::RoundIf(u(rng), c.q16);
  s->q_raw.assign(s->q.size() * (c.q16 ? 2 : 4), 0);
  for (size_t i = 0; i < s->q.size(); ++i)
    reference::StoreAs(s->q[i], c.q16, s->q_raw.data(), i);
  for (int64_t b = 0; b < c.B; ++b)
    s->offsets.push_back(std::max<int64_t>(c.lengths[b] - c.T, 0));
  if (c.mask_batch1) {
    s->key_mask.assign(static_cast<size_t>(c.B * c.S), 1);
    for (int64_t j = 0; j < c.S; ++j) s->key_mask[c.S + j] = 0;
  }
}

// The core on the current target with `threads` workers: out widened.
std::vector<float> RunCore(const BlockedCase& c, BlockedSetup& s, int threads) {
  AttentionParams p;
  p.batch = c.B, p.q_len = c.T, p.kv_len = c.S;
  p.q_heads = c.Hq, p.kv_heads = c.Hkv, p.head_dim = c.D;
  p.q = s.q_raw.data();
  p.q_stride_batch = c.T * c.Hq * c.D, p.q_stride_token = c.Hq * c.D;
  p.q_stride_head = c.D;
  p.q_type = c.q16 ? ElemType::kF16 : ElemType::kF32;
  p.kv_type = c.kv;
  p.qk_int8 = c.int8_qk;
  p.kv_blocks = s.kb;
  const size_t n_out = static_cast<size_t>(c.B * c.T * c.Hq * c.D);
  std::vector<unsigned char> out(n_out * (c.out16 ? 2 : 4), 0xFF);  // NaN
  p.out = out.data();
  p.out_type = c.out16 ? ElemType::kF16 : ElemType::kF32;
  p.out_stride_batch = p.q_stride_batch, p.out_stride_token = p.q_stride_token;
  p.out_stride_head = c.D;
  p.scale = static_cast<float>(1.0 / sqrt(static_cast<double>(c.D)));
  p.causal = c.causal;
  p.position_offsets = s.offsets.data();
  p.ring_capacity = c.ring ? c.S : 0;
  p.sliding_window = c.window;
  p.key_lengths = s.lengths.data();
  p.key_mask = s.key_mask.empty() ? nullptr : s.key_mask.data();
  p.fully_masked_uniform = c.uniform;
  const AttentionPlan plan = PlanAttention(p);
  const size_t bytes = RoundUpTo(
      static_cast<size_t>(AttentionWorkspaceBytes(plan, threads)) + 64, 64);
  void* ws = aligned_alloc(64, bytes);
  pthreadpool_t pool = threads > 1 ? pthreadpool_create(threads) : nullptr;
  RunAttention(p, plan, ws, threads, pool);
  if (pool) pthreadpool_destroy(pool);
  free(ws);
  return reference::Widen(out.data(), n_out, c.out16);
}

reference::AttentionResult Reference(const BlockedCase& c,
                                     const BlockedSetup& s) {
  reference::AttentionCall a;
  a.batch = c.B, a.q_len = c.T, a.kv_len = c.S;
  a.q_heads = c.Hq, a.kv_heads = c.Hkv, a.head_dim = c.D;
  a.q = reference::ToDouble(s.q);
  if (c.int8_qk) {
    // The integer path's q (platforms/qk_int8.h), emulated: each row of
    // f32(q * scale) as s_q * code, s_q = max|q| / 127, codes rounded to
    // nearest even; the reference then applies no scale.
    const float scale =
        static_cast<float>(1.0 / sqrt(static_cast<double>(c.D)));
    for (size_t r = 0; r < s.q.size(); r += static_cast<size_t>(c.D)) {
      float amax = 0.0f;
      for (int64_t d = 0; d < c.D; ++d)
        amax = std::max(amax, fabsf(s.q[r + d] * scale));
      const float s_q = amax / 127.0f, inv = amax > 0 ? 127.0f / amax : 0;
      for (int64_t d = 0; d < c.D; ++d) {
        const float code = nearbyintf(s.q[r + d] * scale * inv);
        a.q[r + d] = static_cast<double>(s_q) *
                     std::min(127.0f, std::max(-127.0f, code));
      }
    }
  }
  a.k = s.k;
  a.v = s.v;
  a.scale = c.int8_qk ? 1.0
                      : static_cast<double>(static_cast<float>(
                            1.0 / sqrt(static_cast<double>(c.D))));
  a.causal = c.causal;
  a.position_offsets = s.offsets;
  a.ring_capacity = c.ring ? c.S : 0;
  a.key_lengths = s.lengths;
  a.sliding_window = c.window;
  if (!s.key_mask.empty()) a.key_masks.push_back(s.key_mask);
  a.fully_masked_uniform = c.uniform;
  return reference::Attention(a);
}

// Checks c on every target against the reference, and 1 vs 2 vs 4 threads
// bitwise where `threads` is set. NaN cases: rows of query heads of the
// poisoned kv head in batches 0 and 1 (sharing that block) must be NaN
// where they see the slot; here every row sees it.
void Check(const BlockedCase& c, bool threads = false) {
  INFO(c.Describe());
  BlockedSetup s;
  Build(c, &s);
  const reference::AttentionResult want = Reference(c, s);
  const bool kv16 = c.kv == ElemType::kF16;
  const double rtol = F16KvTol(kv16, c.out16 ? 1.5e-3 : 1e-4);
  const double atol = F16KvTol(kv16, 1e-4);
  ForEachTarget([&](int64_t) {
    const std::vector<float> got = RunCore(c, s, 1);
    if (c.nan_kind == 0) {
      CheckClose(got, want.out, rtol, atol, "out");
    } else {
      const int64_t G = c.Hq / c.Hkv;
      int64_t bad = 0;
      for (int64_t b = 0; b < c.B; ++b)
        for (int64_t t = 0; t < c.T; ++t)
          for (int64_t h = 0; h < c.Hq; ++h)
            for (int64_t d = 0; d < c.D; ++d) {
              const size_t i =
                  static_cast<size_t>(((b * c.T + t) * c.Hq + h) * c.D + d);
              // A q4 V scale covers 32 elements of the row.
              const bool poisoned =
                  b < 2 && h / G == c.nan_head &&
                  (c.nan_kind == 1 || c.kv == ElemType::kQ8 || d < 32);
              const double w = want.out[i];
              if (poisoned != isnan(w)) ++bad;  // the reference agrees
              if (poisoned ? !isnan(got[i])
                           : !(fabs(got[i] - w) <= atol + rtol * fabs(w)))
                ++bad;
            }
      CHECK(bad == 0);
    }
    if (threads) {
      for (int n : {2, 4}) {
        const std::vector<float> other = RunCore(c, s, n);
        CHECK(memcmp(other.data(), got.data(), got.size() * 4) == 0);
      }
    }
  });
}

}  // namespace
}  // namespace test
}  // namespace gqa

#endif  // GQA_TESTS_BLOCKED_CORE_CASE_H_
