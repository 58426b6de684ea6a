// Attention core over blocked K/V (KV cache v2): pools of f32, f16, q8 and
// q4 blocks written here in the documented layout (random codes and
// scales), shuffled and shared blocks, table entries -1 wherever no slot
// may be read (the pool sits between PROT_NONE pages, so such a read
// faults), decode and flash shapes, rings, ragged lengths, thread-count
// determinism and NaN scales, against the float64 reference on the
// dequantized K/V.
#include "tests/blocked_core_case.h"

namespace gqa {
namespace test {
namespace {

const ElemType kTypes[] = {ElemType::kF32, ElemType::kF16, ElemType::kQ8,
                           ElemType::kQ4};

std::vector<int64_t> DimsFor(ElemType t) {
  if (t == ElemType::kF32 || t == ElemType::kF16) return {64, 128, 65};
  return {32, 64, 96, 128};
}

TEST_CASE("blocked decode: types x q/out types x block sizes x shapes") {
  int64_t i = 0;
  for (ElemType kv : kTypes)
    for (int64_t bt : {1, 7, 16, 64})
      for (int qo = 0; qo < 4; ++qo, ++i) {
        BlockedCase c;
        c.kv = kv, c.bt = bt, c.q16 = qo & 1, c.out16 = qo >> 1;
        c.T = i % 2 ? 4 : 1;
        const int64_t G = (i / 2) % 3 == 0 ? 1 : (i / 2) % 3 == 1 ? 4 : 7;
        c.Hkv = 2, c.Hq = G * c.Hkv;
        const std::vector<int64_t> dims = DimsFor(kv);
        c.D = dims[static_cast<size_t>(i / 3) % dims.size()];
        c.S = 150;
        c.lengths = {150, 67, c.T};  // full, ragged, just the queries
        c.seed = 100 + static_cast<uint64_t>(i);
        Check(c);
      }
}

TEST_CASE("blocked decode: every head dim, several key chunks, threads") {
  for (ElemType kv : kTypes)
    for (int64_t D : DimsFor(kv)) {
      BlockedCase c;
      c.kv = kv, c.D = D, c.bt = 7, c.T = 2, c.Hq = 8, c.Hkv = 2;
      c.S = 1100;  // chunks of 512: boundaries inside cache blocks
      c.lengths = {1100, 777, 0};
      c.seed = 7 + static_cast<uint64_t>(D);
      Check(c, true);
    }
}

TEST_CASE("blocked flash: chunked prefill, causal") {
  int64_t i = 0;
  for (ElemType kv : kTypes)
    for (int64_t bt : {7, 16, 64})
      for (int64_t T : {64, 130, 200}) {
        BlockedCase c;
        c.kv = kv, c.bt = bt, c.T = T, c.S = 300;
        c.Hkv = 2, c.Hq = i % 2 ? 8 : 2;
        const std::vector<int64_t> dims = DimsFor(kv);
        c.D = dims[static_cast<size_t>(i) % dims.size()];
        c.q16 = i % 3 == 1, c.out16 = i % 4 == 2;
        c.B = 2;
        c.lengths = {300, T + 37};
        c.seed = 300 + static_cast<uint64_t>(i++);
        Check(c, i % 5 == 0);
      }
}

TEST_CASE("blocked rings: lengths past and below the capacity, windows") {
  int64_t i = 0;
  for (ElemType kv : kTypes)
    for (int64_t window : {0, 40})
      for (int64_t T : {1, 3, 24}) {  // 24 * 4 rows: flash
        BlockedCase c;
        c.kv = kv, c.ring = true, c.window = window, c.T = T;
        c.S = 96, c.bt = 16, c.D = 64;
        c.lengths = {250, 50, 96};
        c.seed = 500 + static_cast<uint64_t>(i++);
        Check(c, T == 3);
      }
}

TEST_CASE("blocked: fully masked rows under the uniform policy") {
  for (ElemType kv : kTypes)
    for (int64_t T : {1, 40}) {
      BlockedCase c;
      c.kv = kv, c.T = T, c.S = 100, c.bt = 16, c.D = 64;
      c.uniform = true, c.mask_batch1 = true;
      c.lengths = {100, 70, 45};
      Check(c);
    }
}

TEST_CASE("blocked: a NaN scale reaches the rows that see it") {
  for (ElemType kv : {ElemType::kQ8, ElemType::kQ4})
    for (int kind : {1, 2})
      for (int64_t T : {1, 40}) {
        BlockedCase c;
        c.kv = kv, c.T = T, c.S = 100, c.bt = 16, c.D = 64;
        c.lengths = {100, 60, 80};
        c.nan_kind = kind, c.nan_slot = 3, c.nan_head = 1;
        Check(c);
      }
}

}  // namespace
}  // namespace test
}  // namespace gqa
