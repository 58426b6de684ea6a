// KV cache v2 part of the C ABI fuzzer (include/gqa/block_cache.h): a small
// blocked, maybe quantized and rotated cache in harness memory with a block
// table; layout, append, read-back and attend. Whether a call must fail is
// decided from the header's rules (not from the library's validation);
// failed calls must leave a message and write nothing (pool, table,
// lengths, outputs); successful ones are checked bit-exactly against an
// independent encoder (the pool's documented bytes, the read-back) and,
// for the attend, against the float64 oracle.
#ifndef GQA_TESTS_FUZZ_FUZZ_BLOCK_CACHE_H_
#define GQA_TESTS_FUZZ_FUZZ_BLOCK_CACHE_H_

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <set>
#include <utility>
#include <vector>

#include "gqa/block_cache.h"
#include "gqa/gqa.h"
#include "gqa/kv_cache.h"
#include "src/half.h"
#include "src/quantize.h"
#include "tests/fuzz/fuzz_decode.h"
#include "tests/fuzz/fuzz_layer.h"
#include "tests/fuzz/fuzz_reference.h"

namespace gqa_fuzz {
namespace bc {

constexpr int64_t kMaxPos = int64_t{1} << 24;  // positions stay below 2^24
constexpr int64_t kMaxRow = 64;                // the largest D tried

inline bool Pow2(int64_t n) { return n > 0 && (n & (n - 1)) == 0; }
inline int64_t CeilDiv(int64_t a, int64_t b) {
  return (int64_t)((i128{a} + b - 1) / b);
}

// Codes bytes and f16 scales of one row of n elements (header's format).
inline void RowShape(int32_t dtype, int64_t n, int64_t* bytes,
                     int64_t* scales) {
  *bytes = dtype == GQA_DTYPE_F32   ? 4 * n
           : dtype == GQA_DTYPE_F16 ? 2 * n
           : dtype == GQA_DTYPE_Q8  ? n
                                    : n / 2;
  *scales = dtype == GQA_DTYPE_Q8 ? 1 : dtype == GQA_DTYPE_Q4 ? n / 32 : 0;
}

// The encoder of record: a source row (f32 or f16) as the cache stores it.
inline void EncodeRow(int32_t dtype, bool rotate, const void* src,
                      int32_t src_dtype, int64_t n, uint8_t* codes,
                      uint8_t* scales) {
  if (src_dtype == GQA_DTYPE_F16 && dtype == GQA_DTYPE_F16 && !rotate) {
    memcpy(codes, src, (size_t)n * 2);  // the row as given
    return;
  }
  float row[kMaxRow];  // n <= kMaxRow (D comes from a table)
  for (int64_t i = 0; i < n; ++i) {
    if (src_dtype == GQA_DTYPE_F16) {
      uint16_t h;
      memcpy(&h, (const uint8_t*)src + 2 * i, 2);
      row[i] = gqa::HalfToFloat(h);
    } else {
      memcpy(&row[i], (const uint8_t*)src + 4 * i, 4);
    }
  }
  if (rotate) gqa::RotateRowF32(row, n);
  switch (dtype) {
    case GQA_DTYPE_F32:
      memcpy(codes, row, (size_t)n * 4);
      break;
    case GQA_DTYPE_F16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = gqa::FloatToHalf(row[i]);
        memcpy(codes + 2 * i, &h, 2);
      }
      break;
    case GQA_DTYPE_Q8: {
      uint16_t sc;
      gqa::QuantizeRowQ8(row, n, reinterpret_cast<int8_t*>(codes), &sc);
      memcpy(scales, &sc, 2);
      break;
    }
    default: {
      uint16_t sc[kMaxRow / 32];
      gqa::QuantizeRowQ4(row, n, codes, sc);
      memcpy(scales, sc, (size_t)(n / 32) * 2);
      break;
    }
  }
}

inline void DecodeRow(int32_t dtype, const uint8_t* codes,
                      const uint8_t* scales, int64_t n, float* out) {
  switch (dtype) {
    case GQA_DTYPE_F32:
      memcpy(out, codes, (size_t)n * 4);
      break;
    case GQA_DTYPE_F16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        memcpy(&h, codes + 2 * i, 2);
        out[i] = gqa::HalfToFloat(h);
      }
      break;
    case GQA_DTYPE_Q8: {
      uint16_t sc;
      memcpy(&sc, scales, 2);
      gqa::DequantizeRowQ8(reinterpret_cast<const int8_t*>(codes), sc, n, out);
      break;
    }
    default: {
      uint16_t sc[kMaxRow / 32];
      memcpy(sc, scales, (size_t)(n / 32) * 2);
      gqa::DequantizeRowQ4(codes, sc, n, out);
      break;
    }
  }
}

// Normalised Walsh-Hadamard (Sylvester order, symmetric: its own inverse)
// in float64.
inline void Hadamard64(double* x, int64_t n) {
  for (int64_t h = 1; h < n; h *= 2)
    for (int64_t j = 0; j < n; ++j)
      if ((j & h) == 0) {
        const double a = x[j], b = x[j + h];
        x[j] = a + b, x[j + h] = a - b;
      }
  const double f = 1.0 / sqrt((double)n);
  for (int64_t j = 0; j < n; ++j) x[j] *= f;
}

// Same bits, NaN == NaN (of any payload).
inline bool SameFloat(float a, float b) {
  if (isnan(a) && isnan(b)) return true;
  return memcmp(&a, &b, 4) == 0;
}

}  // namespace bc

// A configuration the header rules out: every entry point refuses a cache
// of it (status, message) and writes nothing. Small stand-in buffers: a
// call that wrongly went on would read past them (an ASan report).
inline void RefuseBadConfig(Reader& r, const gqa_block_cache_config& cf) {
  std::vector<uint8_t> raw(4096 + 64, 0x3C);
  uint8_t* pool = (uint8_t*)(((uintptr_t)raw.data() + 63) & ~uintptr_t{63});
  std::vector<int32_t> table(64, 0);
  std::vector<int64_t> len(64, 1);
  std::vector<float> src(512, 0.5f), out(512, -3.0f), ws(1024 + 16, 0.0f);
  gqa_block_cache c = {};
  c.config = cf, c.blocks = pool, c.num_blocks = 1;
  c.block_table = table.data(), c.lengths = len.data();
  const std::vector<uint8_t> raw0 = raw;
  const std::vector<int32_t> table0 = table;
  const std::vector<int64_t> len0 = len;
  const std::vector<float> out0 = out;
  gqa_kv_attend_params a = {};
  a.q_len = 1, a.q_heads = cf.kv_heads > 0 && cf.kv_heads < 8 ? cf.kv_heads : 1;
  a.q = src.data(), a.out = out.data();
  size_t size = 12345;
  gqa_status st = GQA_STATUS_OK;
  const int which = r.U8() % 4;
  if (which == 0) {
    st = gqa_block_cache_append(&c, 1, nullptr, src.data(), src.data() + 256,
                                GQA_DTYPE_F32);
  } else if (which == 1) {
    st = gqa_block_cache_attend_workspace_size(&c, &a, 1, &size);
    if (st != GQA_STATUS_OK && size != 12345)
      Finding("failed attend_workspace_size wrote *size_out");
  } else if (which == 2) {
    float* w = (float*)(((uintptr_t)ws.data() + 63) & ~uintptr_t{63});
    st = gqa_block_cache_attend(&c, &a, w, 4096, nullptr);
  } else {
    st = gqa_block_cache_read(&c, 0, 0, 0, out.data(), out.data() + 256);
  }
  ExpectErrorMessage(st);
  if (st == GQA_STATUS_OK) {
    fprintf(stderr,
            "call %d, B=%lld Hkv=%lld D=%lld Dv=%lld cap=%lld "
            "bt=%lld dtype=%d flags=%u\n",
            which, (long long)cf.batch, (long long)cf.kv_heads,
            (long long)cf.head_dim, (long long)cf.value_dim,
            (long long)cf.capacity, (long long)cf.block_tokens, cf.dtype,
            cf.flags);
    Finding("a block cache call accepted an invalid configuration");
  }
  if (raw != raw0 || table != table0 || len != len0 || out != out0)
    Finding("a call refusing its cache's configuration wrote memory");
}

inline void FuzzBlockCache(Reader& r, Rng& rng) {
  using namespace bc;
  static const int64_t kDims[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 32, 64};
  gqa_block_cache_config cf = {};
  cf.batch = r.Dim(1, 2), cf.kv_heads = r.Dim(1, 2);
  cf.head_dim = kDims[r.U8() % 12];
  cf.dtype = r.U8() % 4;
  cf.flags = r.U8() % 8;  // RING | ROTATE | INT8_QK
  cf.capacity = r.Dim(1, 12), cf.block_tokens = r.Dim(1, 5);
  // Valid combinations unless hostile (where the rules may be broken).
  const bool fix = !r.hostile || r.Bit();
  if (fix && cf.dtype == GQA_DTYPE_Q4 && cf.head_dim % 32 != 0)
    cf.head_dim = 32;
  if (fix && (cf.flags & GQA_BLOCK_CACHE_ROTATE) && !Pow2(cf.head_dim))
    cf.head_dim = cf.head_dim < 8 ? 4 : 8;
  if (r.hostile && r.U8() >= 240)
    cf.value_dim = r.Dim(0, 9);
  else if (r.Bit())
    cf.value_dim = cf.head_dim;
  if (r.hostile && r.U8() >= 248) cf.dtype = r.Bit() ? 4 : -1;
  if (r.hostile && r.U8() >= 248) cf.flags |= r.Bit() ? 8u : 0x80000000u;
  const int64_t B = cf.batch, Hkv = cf.kv_heads, D = cf.head_dim;
  const int64_t cap = cf.capacity, bt = cf.block_tokens;
  const bool ring = cf.flags & GQA_BLOCK_CACHE_RING;
  const bool rotate = cf.flags & GQA_BLOCK_CACHE_ROTATE;
  const int32_t dt = cf.dtype;

  // The header's configuration rules (value_dim Dv != D is a valid format).
  const int64_t Dv = cf.value_dim > 0 ? cf.value_dim : D;
  bool bad_cfg = B <= 0 || Hkv <= 0 || D <= 0 || cap <= 0 || bt <= 0 ||
                 bt > 4096 || cf.value_dim < 0 || dt < 0 || dt > 3 ||
                 (cf.flags & ~7u) != 0 ||
                 (dt == GQA_DTYPE_Q4 && (D % 32 != 0 || Dv % 32 != 0)) ||
                 (rotate && (!Pow2(D) || !Pow2(Dv))) || D > 4096 || Dv > 4096;
  // Not documented either way: capacities past the position limit.
  bool may_fail = cap > kMaxPos;
  if (!bad_cfg) {
    // A block or table that cannot exist must be refused; between the
    // harness' allocation limit and that, the harness cannot tell.
    int64_t rb0, rs0, rbv, rsv;
    RowShape(dt, D, &rb0, &rs0);
    RowShape(dt, Dv, &rbv, &rsv);
    const i128 blk = Prod({bt, Hkv, rb0 + rbv + 2 * rs0 + 2 * rsv});
    const i128 tab = Prod({B, CeilDiv(cap, bt), 4});
    const i128 big = blk > tab ? blk : tab;
    if (big > kImpossibleBytes)
      bad_cfg = true;
    else if (big > kMaxAlloc)
      may_fail = true;
  }
  gqa_block_cache_layout lay;
  memset(&lay, 0x5A, sizeof lay);
  const gqa_block_cache_layout lay0 = lay;
  gqa_status st = gqa_block_cache_layout_of(&cf, &lay);
  ExpectErrorMessage(st);
  if (st != GQA_STATUS_OK) {
    if (memcmp(&lay, &lay0, sizeof lay) != 0)
      Finding("failed gqa_block_cache_layout_of wrote the layout");
    if (!bad_cfg && !may_fail) {
      fprintf(stderr,
              "B=%lld Hkv=%lld D=%lld Dv=%lld cap=%lld bt=%lld "
              "dtype=%d flags=%u\n",
              (long long)B, (long long)Hkv, (long long)D,
              (long long)cf.value_dim, (long long)cap, (long long)bt, dt,
              cf.flags);
      Finding("gqa_block_cache_layout_of rejected a valid config");
    }
    if (bad_cfg) RefuseBadConfig(r, cf);
    return;
  }
  if (bad_cfg) {
    fprintf(stderr,
            "B=%lld Hkv=%lld D=%lld Dv=%lld cap=%lld bt=%lld "
            "dtype=%d flags=%u\n",
            (long long)B, (long long)Hkv, (long long)D, (long long)cf.value_dim,
            (long long)cap, (long long)bt, dt, cf.flags);
    Finding("gqa_block_cache_layout_of accepted an invalid config");
  }
  // The rest of this family builds k and v rows of D: a valid Dv != D
  // configuration is checked up to its layout (the suites attend it).
  if (Dv != D) return;
  // The documented layout: row shapes, ordered 64-byte aligned regions of
  // [bt][Hkv] rows within a block of a multiple of 64 bytes.
  {
    int64_t rb, rs;
    RowShape(dt, D, &rb, &rs);
    const i128 rows = Prod({bt, Hkv});
    const i128 kc = Prod({rows, rb}), ks = Prod({rows, rs, 2});
    bool ok = lay.k_row_bytes == rb && lay.v_row_bytes == rb &&
              lay.k_row_scales == rs && lay.v_row_scales == rs &&
              lay.table_columns == CeilDiv(cap, bt) && lay.block_bytes > 0 &&
              lay.block_bytes % 64 == 0 && lay.k_codes >= 0;
    const int64_t off[4] = {lay.k_codes, lay.k_scales, lay.v_codes,
                            lay.v_scales};
    const i128 len[4] = {kc, ks, kc, ks};
    for (int i = 0; i < 4; ++i) {
      ok &=
          off[i] % 64 == 0 && off[i] >= 0 && off[i] + len[i] <= lay.block_bytes;
      if (i > 0) ok &= off[i] >= off[i - 1] + len[i - 1];
    }
    if (!ok) {
      fprintf(stderr,
              "layout: block %lld offs %lld %lld %lld %lld rows "
              "%lld/%lld %lld/%lld cols %lld\n",
              (long long)lay.block_bytes, (long long)off[0], (long long)off[1],
              (long long)off[2], (long long)off[3], (long long)lay.k_row_bytes,
              (long long)lay.k_row_scales, (long long)lay.v_row_bytes,
              (long long)lay.v_row_scales, (long long)lay.table_columns);
      Finding("gqa_block_cache_layout_of: layout not as documented");
    }
  }
  const int64_t cols = lay.table_columns, BB = lay.block_bytes;
  const i128 n_table = Prod({B, cols});
  if (Prod({n_table, 4}) > kMaxAlloc || Prod({B, 8}) > kMaxAlloc) return;

  // The pool: enough distinct blocks for every column unless told fewer.
  int64_t num_blocks = n_table < 64 ? (int64_t)n_table + r.U8() % 3 : 64;
  if (r.hostile && r.U8() >= 240) num_blocks = r.Dim(1, 3);
  bool bad_cache = false;
  // Hostile: one in 8 breaks a field of the cache (hmod 0..6, 7: none).
  const uint8_t hb = r.hostile ? r.U8() : 0;
  const int hmod = hb >= 224 ? hb % 8 : 7;
  if (hmod <= 1) num_blocks = hmod == 0 ? 0 : -1;
  if (hmod == 2) num_blocks = int64_t{1} << 31;
  bad_cache |= num_blocks <= 0 || num_blocks >= (int64_t{1} << 31);
  const int64_t real_blocks =
      num_blocks > 0 && num_blocks < (int64_t{1} << 31) ? num_blocks : 1;
  if (Prod({real_blocks, BB}) > kMaxAlloc / 4) return;  // keep runs quick
  const size_t pool_bytes = (size_t)(real_blocks * BB);
  std::vector<uint8_t> pool_raw(pool_bytes + 128);
  uint8_t* pool =
      (uint8_t*)(((uintptr_t)pool_raw.data() + 63) & ~uintptr_t{63});
  if (hmod == 3) pool += 8, bad_cache = true;  // misaligned
  // History: every row of every block holds an encoded random row.
  auto kc_at = [&](uint8_t* blk, int64_t row) {
    return blk + lay.k_codes + row * lay.k_row_bytes;
  };
  auto ks_at = [&](uint8_t* blk, int64_t row) {
    return blk + lay.k_scales + row * lay.k_row_scales * 2;
  };
  auto vc_at = [&](uint8_t* blk, int64_t row) {
    return blk + lay.v_codes + row * lay.v_row_bytes;
  };
  auto vs_at = [&](uint8_t* blk, int64_t row) {
    return blk + lay.v_scales + row * lay.v_row_scales * 2;
  };
  for (size_t i = 0; i < pool_bytes; i += 8) {  // padding: random bytes
    const uint64_t x = rng.Next();
    memcpy(pool + i, &x, pool_bytes - i < 8 ? pool_bytes - i : 8);
  }
  {
    float row[kMaxRow];
    for (int64_t blk = 0; blk < real_blocks; ++blk)
      for (int64_t rr = 0; rr < bt * Hkv; ++rr)
        for (int kv = 0; kv < 2; ++kv) {
          for (int64_t i = 0; i < D; ++i) row[i] = (float)rng.Uniform();
          uint8_t* base = pool + blk * BB;
          EncodeRow(dt, rotate, row, GQA_DTYPE_F32, D,
                    kv ? vc_at(base, rr) : kc_at(base, rr),
                    kv ? vs_at(base, rr) : ks_at(base, rr));
        }
  }
  bool finite = true;
  if (r.hostile && r.U8() >= 240 && pool_bytes > 0) {  // garbage in the pool
    for (int i = 0; i < 8; ++i) pool[rng.Next() % pool_bytes] = 0xFF;
    finite = false;
  }

  // Lengths, then the table: distinct blocks, shuffled, or a shared prefix;
  // -1 past the held columns sometimes.
  std::vector<int64_t> len((size_t)B);
  for (auto& x : len) {
    x = r.Dim(0, cap > 64 ? 64 : ring ? 3 * cap : cap);
    bad_cache |= x < 0 || (!ring && x > cap) || x > kMaxPos;
  }
  auto held_of = [&](int64_t b) { return len[b] < cap ? len[b] : cap; };
  const int tmode = r.U8() % 4;
  const bool unset_free = r.Bit();
  std::vector<int32_t> table((size_t)n_table);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < cols; ++c) {
      int64_t e = (b * cols + c) % real_blocks;
      if (tmode == 1) e = (int64_t)(rng.Next() % (uint64_t)real_blocks);
      if (tmode == 2 && b > 0 && c == 0) e = 0;  // shares batch 0's first
      if (tmode == 3) e = (real_blocks - 1 - e);
      if (unset_free && len[b] >= 0 && c >= CeilDiv(held_of(b), bt)) e = -1;
      table[b * cols + c] = (int32_t)e;
    }
  if (r.hostile && r.U8() >= 224 && n_table > 0) {
    static const int32_t kBadEntry[] = {-2, INT32_MIN, -1, -1};
    const int k = r.U8();
    const int64_t at = r.U8() % n_table;
    table[at] = k % 5 == 4 ? (int32_t)num_blocks : kBadEntry[k % 4];
    if (k % 5 == 4 && num_blocks < 1) table[at] = 0;
  }
  for (int32_t e : table) bad_cache |= e < -1 || e >= num_blocks;

  gqa_block_cache c = {};
  c.config = cf;
  c.blocks = pool, c.num_blocks = num_blocks;
  c.block_table = table.data(), c.lengths = len.data();
  if (hmod == 4) c.blocks = nullptr, bad_cache = true;
  if (hmod == 5) c.lengths = nullptr, bad_cache = true;
  if (hmod == 6) c.block_table = nullptr, bad_cache = true;

  // Columns: a table column (b, col) is `needed` when the call reads or
  // writes it (missing: must fail) and `held` when it holds a token (missing
  // but not needed: the header says nothing; either outcome is accepted).
  auto entry = [&](int64_t b, int64_t col) { return table[b * cols + col]; };
  auto held_missing = [&]() {
    for (int64_t b = 0; b < B; ++b)
      for (int64_t col = 0; len[b] >= 0 && col < CeilDiv(held_of(b), bt); ++col)
        if (entry(b, col) == -1) return true;
    return false;
  };
  auto slot_of = [&](int64_t p) { return ring ? p % cap : p; };
  // Positions [lo, hi) of batch b need blocks: true if one is missing.
  // One look per column run (hi - lo <= capacity here).
  auto range_missing = [&](int64_t b, int64_t lo, int64_t hi) {
    for (int64_t p = lo; p < hi;) {
      const int64_t slot = slot_of(p);
      if (entry(b, slot / bt) == -1) return true;
      const int64_t to_col = bt - slot % bt, to_end = cap - slot;
      p += to_col < to_end ? to_col : to_end;
    }
    return false;
  };
  // Decoded stored rows of the token at slot `slot` of batch b, head g.
  auto stored = [&](const uint8_t* pl, int64_t b, int64_t slot, int64_t g,
                    float* k, float* v) {
    const uint8_t* blk = pl + (int64_t)entry(b, slot / bt) * BB;
    const int64_t rr = (slot % bt) * Hkv + g;
    DecodeRow(dt, blk + lay.k_codes + rr * lay.k_row_bytes,
              blk + lay.k_scales + rr * lay.k_row_scales * 2, D, k);
    DecodeRow(dt, blk + lay.v_codes + rr * lay.v_row_bytes,
              blk + lay.v_scales + rr * lay.v_row_scales * 2, D, v);
  };
  const bool small_cache = !bad_cache && cap <= 64;

  // 0 append, 1 attend, 2 append + attend, 3 read, 4 layer forward
  const int op = r.U8() % 5;
  if (op == 4) {
    // The layer's cached forward over this cache (Hkv, D its own unless
    // hostile), T new tokens.
    int64_t LD = D, LH = Hkv;
    if (r.hostile && r.U8() >= 240) {
      if (r.Bit())
        LD = D == 1 ? 2 : D - 1;
      else
        LH = Hkv + 1;
    }
    const int64_t Hq = Group(LH, r.U8() % 2), Fq = r.Dim(1, 4);
    const int64_t Fv = r.Dim(1, 4);
    gqa_layer_config lc = {};
    gqa_layer_config_init(&lc, LD, Hq, LH, Fq, Fv);
    lc.use_bias = r.Bit(), lc.use_gate = r.Bit();
    lc.sliding_window = r.Bit() ? 0 : r.Dim(0, 4);
    lc.fully_masked_policy = r.U8() % 3;
    lc.dtype = r.U8() % 2;
    const bool half = lc.dtype == 1;
    if (Fq < 1 || Fq > 4 || Fv < 1 || Fv > 4 || lc.sliding_window < 0 ||
        Hq < 1 || Hq > 64 || LH > 64)
      return;  // layer creation is FuzzLayer's
    const int64_t nq = Hq * LD, nkv = LH * LD;
    Tensor w[10] = {
        MakeTensor(Fq * nq, half, rng, 0.5),  MakeTensor(nq, half, rng, 0.5),
        MakeTensor(Fv * nkv, half, rng, 0.5), MakeTensor(nkv, half, rng, 0.5),
        MakeTensor(Fv * nkv, half, rng, 0.5), MakeTensor(nkv, half, rng, 0.5),
        MakeTensor(Fq * nq, half, rng, 0.5),  MakeTensor(nq, half, rng, 0.5),
        MakeTensor(nq * Fq, half, rng, 0.5),  MakeTensor(Fq, half, rng, 0.5)};
    gqa_layer_weights lw = {w[0].data(), w[1].data(), w[2].data(), w[3].data(),
                            w[4].data(), w[5].data(), w[6].data(), w[7].data(),
                            w[8].data(), w[9].data()};
    gqa_layer_t layer = nullptr;
    if (gqa_layer_create(&lc, &lw, &layer) != GQA_STATUS_OK) return;
    struct Destroy {
      gqa_layer_t l;
      ~Destroy() { gqa_layer_destroy(l); }
    } destroy{layer};
    const int64_t T = r.Dim(1, 3);
    if (T < 1 || T > 8) return;  // sizes FuzzLayer tries
    gqa_forward_args args = {};
    args.batch = B, args.query_len = T, args.value_len = T;
    if (r.hostile && r.U8() >= 240) args.batch = B + 1;
    if (r.hostile && r.U8() >= 240) args.value_len = T + 1;
    const int64_t W = lc.sliding_window;
    bool must_fail = bad_cache || LD != D || LH != Hkv || args.batch != B ||
                     args.value_len != T || T < 1 ||
                     (ring && (W == 0 || i128{W} + T - 1 > cap));
    bool may = may_fail;
    bool fresh = true;
    if (!bad_cache) {
      for (int64_t b = 0; b < B && T >= 1; ++b) {
        fresh &= len[b] == 0;
        if ((!ring && len[b] + T > cap) || len[b] + T > kMaxPos) {
          must_fail = true;
          continue;
        }
        const int64_t skip = ring && T > cap ? T - cap : 0;
        if (range_missing(b, len[b] + skip, len[b] + T)) must_fail = true;
        // The keys the queries read, old ones included.
        const int64_t L = len[b] + T;
        int64_t lo = ring && L > cap ? L - cap : 0;
        if (W > 0 && W < kMaxPos && L - T - W + 1 > lo) lo = L - T - W + 1;
        if (range_missing(b, lo, L)) must_fail = true;
      }
      if (held_missing()) may = true;
    }
    const int64_t nb = args.batch, ns = args.value_len;
    if (nb > 4 || ns > 8) return;
    Tensor query = MakeTensor(nb * T * Fq, half, rng, 1.0);
    Tensor value = MakeTensor(nb * ns * Fv, half, rng, 1.0);
    Tensor out = MakeTensor(nb * T * Fq, half, rng, 0);
    finite &= MaybeNonFinite(r, query) + MaybeNonFinite(r, value) == 0;
    args.query = query.data(), args.value = value.data();
    args.output = out.data();
    const int64_t max_threads = r.Bit() ? 1 : 2;
    const bool use_pool = r.Bit();
    const uint8_t ws_mode = r.U8();
    size_t ws_size = 0;
    st = gqa_layer_block_cached_workspace_size(layer, &c, T, max_threads,
                                               &ws_size);
    if (st != GQA_STATUS_OK) may = true;
    Workspace ws;
    if (!ws.FromQuery(st, ws_size, ws_mode, max_threads == 1, &must_fail))
      return;
    if (ws_mode % 16 == 2) may = true;
    Poison(out.bytes);
    const std::vector<uint8_t> out0 = out.bytes, q0 = query.bytes;
    const std::vector<uint8_t> pool0(pool, pool + pool_bytes);
    const std::vector<int32_t> table0 = table;
    const std::vector<int64_t> len0 = len;
    st = gqa_layer_forward_block_cached(layer, &args, &c, ws.ptr, ws.size,
                                        use_pool ? Pool() : nullptr);
    ExpectErrorMessage(st);
    if (getenv("GQA_FUZZ_DEBUG"))
      fprintf(stderr,
              "block layer: %s (must_fail %d) B=%lld Hkv=%lld D=%lld "
              "cap=%lld bt=%lld dt=%d flags=%u len=%lld T=%lld Hq=%lld "
              "Fq=%lld Fv=%lld W=%lld bias=%d gate=%d dtype=%d\n",
              gqa_status_name(st), must_fail, (long long)B, (long long)Hkv,
              (long long)D, (long long)cap, (long long)bt, dt, cf.flags,
              (long long)len0[0], (long long)T, (long long)Hq, (long long)Fq,
              (long long)Fv, (long long)W, lc.use_bias, lc.use_gate, lc.dtype);
    ExpectUnchanged(query.bytes, q0, "query (block cached)");
    if (table != table0) Finding("forward_block_cached changed the table");
    if (st != GQA_STATUS_OK) {
      ExpectUnchanged(out.bytes, out0, "output (block cached)");
      if (memcmp(pool, pool0.data(), pool_bytes) != 0)
        Finding("failed forward_block_cached wrote the pool");
      if (len != len0) Finding("failed forward_block_cached changed lengths");
      if (!must_fail && !may) {
        fprintf(stderr, "layer T=%lld W=%lld len=%lld\n", (long long)T,
                (long long)W, (long long)len[0]);
        Finding("gqa_layer_forward_block_cached rejected a valid call");
      }
      return;
    }
    if (must_fail) {
      fprintf(stderr,
              "layer T=%lld W=%lld len=%lld LD=%lld LH=%lld "
              "ws_bad=%d\n",
              (long long)T, (long long)W, (long long)len0[0], (long long)LD,
              (long long)LH, ws.bad);
      Finding("gqa_layer_forward_block_cached accepted an invalid call");
    }
    for (int64_t b = 0; b < B; ++b)
      if (len[b] != len0[b] + T) Finding("forward_block_cached: wrong lengths");
    // A fresh f32 / f16 cache: a causal forward of the T tokens, unless
    // sequences share a block they write (one then sees the other's rows).
    if (!fresh || (!finite && !Strict()) || dt >= GQA_DTYPE_Q8 || !small_cache)
      return;
    std::set<std::pair<int64_t, int64_t>> written;  // (block, slot row)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t j = ring && T > cap ? T - cap : 0; j < T; ++j) {
        const int64_t slot = slot_of(j);
        if (!written.insert({entry(b, slot / bt), slot % bt}).second) return;
      }
    gqa::reference::Config rc;
    rc.head_dim = D, rc.q_heads = Hq, rc.kv_heads = Hkv;
    rc.q_features = Fq, rc.k_features = Fv, rc.v_features = Fv;
    rc.use_bias = lc.use_bias, rc.use_gate = lc.use_gate;
    rc.sliding_window = W, rc.dropout = 0, rc.seed = lc.seed;
    rc.policy = static_cast<gqa::reference::Policy>(lc.fully_masked_policy);
    gqa::reference::Weights rw;
    std::vector<double>* dst[10] = {
        &rw.query_kernel,  &rw.query_bias, &rw.key_kernel,  &rw.key_bias,
        &rw.value_kernel,  &rw.value_bias, &rw.gate_kernel, &rw.gate_bias,
        &rw.output_kernel, &rw.output_bias};
    for (int i = 0; i < 10; ++i)
      *dst[i] = ToDoubles(w[i], i % 2 == 0 || lc.use_bias);
    gqa::reference::Call call;
    call.batch = B, call.q_len = T, call.kv_len = T, call.causal = true;
    call.query = ToDoubles(query, true), call.value = ToDoubles(value, true);
    const gqa::reference::Result want = gqa::reference::Forward(rc, rw, call);
    double tol = half || dt == GQA_DTYPE_F16 ? 2e-2 : 2e-4;
    if (rotate) tol = tol > 1e-3 ? tol : 1e-3;
    for (int64_t i = 0; i < out.elems; ++i)
      ExpectClose(out.Get(i), want.output[i], tol, "block cached layer", i);
    if (getenv("GQA_FUZZ_DEBUG"))
      fprintf(stderr, "block layer: %lld values checked\n",
              (long long)out.elems);
    return;
  }
  bool shadow_ok = true;  // the pool is as the encoder says
  if (op == 0 || op == 2) {
    int64_t n = r.Dim(0, ring && cap <= 64 ? 2 * cap + 1 : 4);
    const bool use_counts = r.Bit();
    int32_t src_dtype = r.U8() % 2;
    if (r.hostile && r.U8() >= 248) src_dtype = r.Bit() ? GQA_DTYPE_Q8 : 9;
    std::vector<int64_t> counts((size_t)B);
    bool must_fail = bad_cache || n < 0 || (src_dtype != 0 && src_dtype != 1);
    bool may = may_fail;
    for (int64_t b = 0; b < B; ++b) {
      counts[b] = use_counts ? r.Dim(0, n >= 0 && n < 26 ? n : 4) : n;
      const int64_t k = counts[b];
      if (k < 0 || k > n) {
        must_fail = true;
        continue;
      }
      if (bad_cache) continue;
      if ((!ring && i128{len[b]} + k > cap) || i128{len[b]} + k > kMaxPos) {
        must_fail = true;
        continue;
      }
      const int64_t skip = ring && k > cap ? k - cap : 0;
      if (range_missing(b, len[b] + skip, len[b] + k)) must_fail = true;
    }
    if (!bad_cache && held_missing()) may = true;
    const i128 n_src = Prod({B, n, Hkv, D});
    if (Prod({n_src, 4}) > kImpossibleBytes)
      must_fail = true;
    else if (Prod({n_src, 4}) > kMaxAlloc)
      return;
    const int32_t sdt = src_dtype == 1 ? 1 : 0;
    Tensor kn = MakeTensor(n_src, sdt, rng, 1.0);
    Tensor vn = MakeTensor(n_src, sdt, rng, 1.0);
    finite &= MaybeNonFinite(r, kn) + MaybeNonFinite(r, vn) == 0;
    // Zero-size sources: a real (non-NULL) pointer all the same.
    static float empty_src[2][4];
    const void* kp = kn.data() ? kn.data() : empty_src[0];
    const void* vp = vn.data() ? vn.data() : empty_src[1];
    if (r.hostile && r.U8() >= 240) {  // sources overlapping the cache, NULL
      const int w = r.U8() % 4;
      if (w == 3) kp = nullptr, must_fail = true;
      if (n_src > 0 && w == 0 && (size_t)kn.bytes.size() <= pool_bytes)
        kp = pool, must_fail = true;
      if (n_src > 0 && w == 1) vp = len.data(), must_fail = true;
      if (n_src > 0 && w == 2) kp = table.data(), must_fail = true;
      if (w == 2 && n_src > 0 && (size_t)kn.bytes.size() > table.size() * 4)
        return;  // table smaller than a source: ASan would read past it
    }
    const std::vector<uint8_t> pool0(pool, pool + pool_bytes);
    const std::vector<int32_t> table0 = table;
    const std::vector<int64_t> len0 = len;
    st = gqa_block_cache_append(&c, n, use_counts ? counts.data() : nullptr, kp,
                                vp, src_dtype);
    ExpectErrorMessage(st);
    if (table != table0) Finding("append changed the block table");
    if (st != GQA_STATUS_OK) {
      if (memcmp(pool, pool0.data(), pool_bytes) != 0)
        Finding("failed append wrote the pool");
      if (len != len0) Finding("failed append changed lengths");
      if (!must_fail && !may) {
        fprintf(stderr, "append n=%lld counts=%d src=%d len=%lld\n",
                (long long)n, use_counts, src_dtype, (long long)len[0]);
        Finding("gqa_block_cache_append rejected a valid call");
      }
      return;
    }
    if (must_fail) {
      fprintf(stderr,
              "append n=%lld counts=%d,%lld src=%d len=%lld cap=%lld "
              "ring=%d nb=%lld\n",
              (long long)n, use_counts, (long long)counts[0], src_dtype,
              (long long)len0[0], (long long)cap, ring, (long long)num_blocks);
      Finding("gqa_block_cache_append accepted an invalid call");
    }
    // Lengths advance by the counts; the pool is the old one with the
    // encoder's rows written (a ring long append: its last `capacity`).
    std::vector<uint8_t> want = pool0;
    std::set<std::pair<int64_t, int64_t>> written;  // (block, row)
    const int64_t ses = sdt ? 2 : 4;
    for (int64_t b = 0; b < B; ++b) {
      if (len[b] != len0[b] + counts[b]) Finding("append: wrong lengths");
      const int64_t k = counts[b];
      for (int64_t j = ring && k > cap ? k - cap : 0; j < k; ++j) {
        const int64_t slot = slot_of(len0[b] + j);
        const int64_t blk = entry(b, slot / bt);
        uint8_t* base = want.data() + blk * BB;
        for (int64_t g = 0; g < Hkv; ++g) {
          const int64_t rr = (slot % bt) * Hkv + g;
          if (!written.insert({blk, rr}).second) shadow_ok = false;
          const int64_t src = ((b * n + j) * Hkv + g) * D * ses;
          EncodeRow(dt, rotate, kn.bytes.data() + src, sdt, D, kc_at(base, rr),
                    ks_at(base, rr));
          EncodeRow(dt, rotate, vn.bytes.data() + src, sdt, D, vc_at(base, rr),
                    vs_at(base, rr));
        }
      }
    }
    // NaN payloads of f16 conversions may differ: bytes compared only for
    // finite sources (or GQA_FUZZ_STRICT).
    if (shadow_ok && (finite || Strict() || dt >= GQA_DTYPE_Q8)) {
      for (size_t i = 0; i < pool_bytes; ++i)
        if (pool[i] != want[i]) {
          fprintf(stderr,
                  "pool byte %zu (block %zu, offset %zu): got 0x%02x, "
                  "want 0x%02x (was 0x%02x)\n",
                  i, i / (size_t)BB, i % (size_t)BB, pool[i], want[i],
                  pool0[i]);
          Finding("append: pool bytes differ from the documented encoding");
        }
    }
    if (getenv("GQA_FUZZ_DEBUG"))
      fprintf(stderr, "block append: pool %s, lengths %lld,%lld\n",
              shadow_ok ? "compared" : "not compared (rows written twice)",
              (long long)len[0], (long long)(B > 1 ? len[1] : -1));
    memcpy(pool, want.data(), pool_bytes);  // continue from the encoder's
    // Read-back of every held row, bit-exact against the decoder.
    std::vector<float> kr((size_t)D + 2), vr((size_t)D + 2), ke((size_t)D),
        ve((size_t)D);
    for (int64_t b = 0; shadow_ok && b < B; ++b) {
      const int64_t first = ring && len[b] > cap ? len[b] - cap : 0;
      for (int64_t p = first; p < len[b] && p < first + 64; ++p)
        for (int64_t g = 0; g < Hkv; ++g) {
          const bool gone = entry(b, slot_of(p) / bt) == -1;
          st = gqa_block_cache_read(&c, b, p, g, kr.data(), vr.data());
          ExpectErrorMessage(st);
          if (gone && st == GQA_STATUS_OK)
            Finding("gqa_block_cache_read accepted a position without block");
          if (gone) continue;
          if (st != GQA_STATUS_OK) {
            if (held_missing()) continue;
            Finding("gqa_block_cache_read failed on a held position");
          }
          stored(pool, b, slot_of(p), g, ke.data(), ve.data());
          for (int64_t i = 0; i < D; ++i)
            if (!SameFloat(kr[i], ke[i]) || !SameFloat(vr[i], ve[i])) {
              fprintf(stderr,
                      "b=%lld p=%lld g=%lld i=%lld: k %.9g/%.9g v "
                      "%.9g/%.9g\n",
                      (long long)b, (long long)p, (long long)g, (long long)i,
                      kr[i], ke[i], vr[i], ve[i]);
              Finding("read-back differs from the encoder");
            }
        }
    }
  }

  if (op == 3) {  // one read, maybe hostile
    const int64_t b = r.Dim(0, B - 1);
    const int64_t lb = b >= 0 && b < B ? len[b] : 0;
    const int64_t first = ring && lb > cap ? lb - cap : 0;
    const int64_t held = lb - first <= 0   ? 0
                         : lb - first < 64 ? lb - first
                                           : 64;
    int64_t p = (int64_t)(i128{first} - 1 + r.U8() % (held + 2));
    if (r.hostile && r.U8() >= 240) p = r.Dim(0, 3);
    const int64_t g = r.Dim(0, Hkv - 1);
    std::vector<float> buf((size_t)(2 * D + 8));
    float* kr = buf.data();
    float* vr = buf.data() + D + 4;
    bool must_fail = bad_cache || b < 0 || b >= B || g < 0 || g >= Hkv ||
                     p < first || p >= lb;
    bool may = may_fail;
    if (!must_fail && entry(b, slot_of(p) / bt) == -1) must_fail = true;
    if (!bad_cache && held_missing()) may = true;
    if (r.hostile && r.U8() >= 240) {
      const int w = r.U8() % 4;
      if (w == 0) kr = nullptr, must_fail = true;
      if (w == 1 && D > 1) vr = kr + 1, must_fail = true;  // rows overlap
      if (w == 2 && (size_t)D * 4 <= pool_bytes)
        vr = (float*)pool, must_fail = true;  // in the pool
      if (w == 3) vr = nullptr, must_fail = true;
    }
    for (auto& x : buf) x = -12345.0f;
    const std::vector<float> buf0 = buf;
    const std::vector<uint8_t> pool0(pool, pool + pool_bytes);
    st = gqa_block_cache_read(&c, b, p, g, kr, vr);
    ExpectErrorMessage(st);
    if (memcmp(pool, pool0.data(), pool_bytes) != 0)
      Finding("read wrote the pool");
    if (st != GQA_STATUS_OK) {
      if (memcmp(buf.data(), buf0.data(), buf.size() * 4) != 0)
        Finding("failed read wrote k_row / v_row");
      if (!must_fail && !may)
        Finding("gqa_block_cache_read rejected a valid call");
      return;
    }
    if (must_fail) {
      fprintf(stderr, "read b=%lld p=%lld g=%lld len=%lld\n", (long long)b,
              (long long)p, (long long)g, (long long)lb);
      Finding("gqa_block_cache_read accepted an invalid call");
    }
    std::vector<float> ke((size_t)D), ve((size_t)D);
    stored(pool, b, slot_of(p), g, ke.data(), ve.data());
    for (int64_t i = 0; i < D; ++i)
      if (!SameFloat(kr[i], ke[i]) || !SameFloat(vr[i], ve[i]))
        Finding("read-back differs from the encoder");
    if (buf[D] != -12345.0f || buf[2 * D + 4] != -12345.0f)
      Finding("read wrote past k_row / v_row");
    return;
  }
  if (op == 0) return;

  // Attend of the newest T tokens.
  gqa_kv_attend_params a = {};
  a.q_len = r.Dim(1, 3);
  a.q_heads = Group(Hkv, r.U8() % 3);
  if (r.hostile && r.U8() >= 240) a.q_heads = r.Dim(1, 5);
  a.q_dtype = r.U8() % 2, a.out_dtype = r.U8() % 2;
  if (r.hostile && r.U8() >= 248) a.q_dtype = 2;
  a.scale = r.Bit() ? 0.0f : r.Param(0.05f, 2.0f);
  a.sliding_window = r.Bit() ? 0 : r.Dim(0, 9);
  a.fully_masked_policy = r.hostile && r.U8() >= 248 ? 3 : r.U8() % 3;
  const bool use_pool = r.Bit();
  const int64_t max_threads = r.Bit() ? 1 : r.Dim(1, 2);
  const uint8_t ws_mode = r.U8();
  const int64_t T = a.q_len, Hq = a.q_heads, W = a.sliding_window;
  bool must_fail = bad_cache || T < 1 || Hq < 1 || (Hkv > 0 && Hq % Hkv != 0) ||
                   !ValidPolicy(a.fully_masked_policy) || !(a.scale >= 0) ||
                   isinf(a.scale) || W < 0 || !ValidDtype(a.q_dtype) ||
                   (ring && (W == 0 || i128{W} + T - 1 > cap));
  bool may = may_fail;
  const bool windowed = W > 0 && (ring || W < kMaxPos);
  if (!bad_cache) {
    for (int64_t b = 0; b < B; ++b) {
      if (len[b] < T) {
        must_fail = true;
        continue;
      }
      if (T < 1) break;  // fails anyway
      // Keys read: [lo, len) (the window of the first query to the newest).
      int64_t lo = ring && len[b] > cap ? len[b] - cap : 0;
      if (windowed && W < kMaxPos && len[b] - T - W + 1 > lo)
        lo = len[b] - T - W + 1;
      if (T >= 1 && W >= 0 && range_missing(b, lo, len[b])) must_fail = true;
    }
    if (held_missing()) may = true;
  }
  const i128 n_q = Prod({B, T, Hq, D});
  if (Prod({n_q, 4}) > kImpossibleBytes)
    must_fail = true;
  else if (Prod({n_q, 4}) > kMaxAlloc)
    return;
  Tensor q = MakeTensor(n_q, a.q_dtype == 1, rng, 1.0);
  Tensor out = MakeTensor(n_q, a.out_dtype, rng, 0);
  finite &= !MaybeNonFinite(r, q);
  a.q = q.data(), a.out = out.data();
  if (r.hostile && r.U8() >= 240) {  // out overlapping q or the cache
    const int w = r.U8() % 3;
    if (n_q > 0 && w == 0) a.out = q.data(), must_fail = true;
    if (n_q > 0 && w == 1 && out.bytes.size() <= pool_bytes)
      a.out = pool, must_fail = true;
    if (n_q > 0 && w == 2) a.q = nullptr, must_fail = true;
  }
  size_t ws_size = 0;
  st = gqa_block_cache_attend_workspace_size(&c, &a, max_threads, &ws_size);
  // The size query only reads the cache and the shapes: a valid call's
  // query must succeed.
  if (st != GQA_STATUS_OK && !must_fail && !may && max_threads >= 1 &&
      max_threads <= 2) {
    fprintf(stderr, "size query: %s\n", gqa_status_name(st));
    Finding("gqa_block_cache_attend_workspace_size rejected a valid call");
  }
  if (st != GQA_STATUS_OK || ws_mode % 16 == 2) may = true;
  Workspace ws;
  if (!ws.FromQuery(st, ws_size, ws_mode, max_threads == 1, &must_fail)) return;
  Poison(out.bytes);
  const std::vector<uint8_t> out0 = out.bytes, q0 = q.bytes;
  const std::vector<uint8_t> pool0(pool, pool + pool_bytes);
  const std::vector<int32_t> table0 = table;
  const std::vector<int64_t> len0 = len;
  if (getenv("GQA_FUZZ_DEBUG")) {
    fprintf(stderr,
            "block attend: B=%lld Hkv=%lld D=%lld cap=%lld bt=%lld "
            "dt=%d flags=%u T=%lld Hq=%lld W=%lld len=%lld,%lld nb=%lld\n",
            (long long)B, (long long)Hkv, (long long)D, (long long)cap,
            (long long)bt, dt, cf.flags, (long long)T, (long long)Hq,
            (long long)W, (long long)len[0], (long long)(B > 1 ? len[1] : -1),
            (long long)num_blocks);
  }
  st = gqa_block_cache_attend(&c, &a, ws.ptr, ws.size,
                              use_pool ? Pool() : nullptr);
  ExpectErrorMessage(st);
  if (memcmp(pool, pool0.data(), pool_bytes) != 0 || table != table0 ||
      len != len0)
    Finding("attend wrote the cache");
  ExpectUnchanged(q.bytes, q0, "q (block attend)");
  if (st != GQA_STATUS_OK) {
    ExpectUnchanged(out.bytes, out0, "out (block attend)");
    if (!must_fail && !may) {
      fprintf(stderr, "attend T=%lld Hq=%lld W=%lld len=%lld\n", (long long)T,
              (long long)Hq, (long long)W, (long long)len[0]);
      Finding("gqa_block_cache_attend rejected a valid call");
    }
    return;
  }
  if (must_fail) {
    fprintf(stderr, "attend T=%lld Hq=%lld W=%lld len=%lld ws_bad=%d\n",
            (long long)T, (long long)Hq, (long long)W, (long long)len[0],
            ws.bad);
    Finding("gqa_block_cache_attend accepted an invalid call");
  }
  // Bitwise the same on the other thread count.
  {
    Tensor out2 = out;
    Poison(out2.bytes);
    a.out = out2.data();
    st = gqa_block_cache_attend(&c, &a, ws.ptr, ws.size,
                                use_pool ? nullptr : Pool());
    a.out = out.data();
    if (st != GQA_STATUS_OK) Finding("attend failed on another thread count");
    if (out2.bytes != out.bytes)
      Finding("attend: results differ between 1 and 2 threads");
  }
  if (!small_cache || !shadow_ok || (!finite && !Strict()) ||
      !(a.scale <= 2.0f))
    return;

  // Reference: dense double k/v of positions [0, S) from the stored rows of
  // held ones; q and out rotated in float64 where the cache rotates.
  int64_t S = 0;
  for (int64_t x : len) S = x > S ? x : S;
  CoreRef ref{B,  T,  S,  Hq, Hkv, D, 0, a.fully_masked_policy != 1,
              {}, {}, {}, {}};
  if (RefWork(ref) > kRefBudget) return;
  ref.scale = a.scale > 0 ? a.scale : 1.0 / sqrt((double)D);
  std::vector<double> kd((size_t)(B * S * Hkv * D), 0.0), vd(kd.size(), 0.0);
  std::vector<float> kr((size_t)D), vr((size_t)D);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t first = ring && len[b] > cap ? len[b] - cap : 0;
    for (int64_t p = first; p < len[b]; ++p)
      for (int64_t g = 0; g < Hkv; ++g) {
        if (entry(b, slot_of(p) / bt) == -1) continue;  // not read (masked)
        stored(pool, b, slot_of(p), g, kr.data(), vr.data());
        for (int64_t i = 0; i < D; ++i) {
          kd[((b * S + p) * Hkv + g) * D + i] = kr[i];
          vd[((b * S + p) * Hkv + g) * D + i] = vr[i];
        }
      }
  }
  std::vector<double> qd((size_t)(B * T * Hq * D));
  for (size_t i = 0; i < qd.size(); ++i) qd[i] = q.Get((int64_t)i);
  if (rotate)
    for (size_t i = 0; i < qd.size(); i += (size_t)D) Hadamard64(&qd[i], D);
  ref.q = [&](int64_t b, int64_t t, int64_t h, int64_t d) {
    return qd[((b * T + t) * Hq + h) * D + d];
  };
  ref.k = [&](int64_t b, int64_t s, int64_t h, int64_t d) {
    return kd[((b * S + s) * Hkv + h) * D + d];
  };
  ref.v = [&](int64_t b, int64_t s, int64_t h, int64_t d) {
    return vd[((b * S + s) * Hkv + h) * D + d];
  };
  ref.allowed = [&](int64_t b, int64_t, int64_t t, int64_t s) {
    const int64_t pos = len[b] - T + t;
    if (s > pos || (ring && s < len[b] - cap)) return false;
    return !windowed || pos - s < W;
  };
  std::vector<double> want, unused;
  RunCoreRef(ref, &want, &unused);
  if (rotate)
    for (size_t i = 0; i < want.size(); i += (size_t)D) Hadamard64(&want[i], D);
  double tol = a.q_dtype || a.out_dtype || dt == GQA_DTYPE_F16 ? 1e-2 : 1e-4;
  if (rotate || dt >= GQA_DTYPE_Q8) tol = tol > 1e-3 ? tol : 1e-3;
  if ((cf.flags & GQA_BLOCK_CACHE_INT8_QK) && dt >= GQA_DTYPE_Q8) {
    // Integer q.k (where the CPU has it; block_cache.h): each logit may move
    // by d = s_q / 2 * sum|k| (s_q = max|q * scale| / 127 of its row), each
    // softmax weight by a factor within e^(+-2d), so an output element (a
    // mean of V rows) by up to (e^(2d) - 1) * 2 max|v|; times sqrt(D)
    // where the output is rotated back.
    double qmax = 0, ksum = 0, vmax = 0;
    for (double x : qd) qmax = fabs(x) > qmax ? fabs(x) : qmax;
    for (size_t i = 0; i < kd.size(); i += (size_t)D) {
      double sum = 0;
      for (int64_t e = 0; e < D; ++e) sum += fabs(kd[i + (size_t)e]);
      ksum = sum > ksum ? sum : ksum;
    }
    for (double x : vd) vmax = fabs(x) > vmax ? fabs(x) : vmax;
    const double d = qmax * ref.scale / 127.0 / 2.0 * ksum;
    double bound = (exp(2.0 * d) - 1.0) * 2.0 * vmax * 1.01;
    if (rotate) bound *= sqrt((double)D);
    tol = bound > tol ? bound : tol;
  }
  for (int64_t i = 0; i < (int64_t)want.size(); ++i)
    ExpectClose(out.Get(i), want[i], tol, "block attend out", i);
  if (getenv("GQA_FUZZ_DEBUG"))
    fprintf(stderr, "block attend: %zu values checked (tol %g)\n", want.size(),
            tol);
}

}  // namespace gqa_fuzz

#endif  // GQA_TESTS_FUZZ_FUZZ_BLOCK_CACHE_H_
