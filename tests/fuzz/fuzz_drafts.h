// Draft verification part of the C ABI fuzzer (spec 4.4; gqa/kv_cache.h and
// gqa/block_cache.h): a small v1 or v2 cache (fuzz_drafts_cache.h), then a
// few truncates, keeps, appends and tree-mask attends on it. Whether a call
// must fail is decided from the headers' rules; a failed call must leave a
// message and write nothing (rows, table, lengths, held_from, out); a
// successful one is checked against the harness' model: lengths and
// held_from, every stored byte (kept rows moved as stored), the read-back,
// and the attend against the float64 oracle (src/reference/attention_ref.h).
#ifndef GQA_TESTS_FUZZ_FUZZ_DRAFTS_H_
#define GQA_TESTS_FUZZ_FUZZ_DRAFTS_H_

#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include <vector>

#include "gqa/block_cache.h"
#include "gqa/kv_cache.h"
#include "src/reference/attention_ref.h"
#include "tests/fuzz/fuzz_block_cache.h"
#include "tests/fuzz/fuzz_decode.h"
#include "tests/fuzz/fuzz_drafts_cache.h"
#include "tests/fuzz/fuzz_drafts_rope.h"

namespace gqa_fuzz {
namespace drafts {

// The outcome checks every call shares. False: stop (the call failed, or
// succeeded where the header says nothing and the model cannot follow).
inline bool Outcome(gqa_status st, bool must_fail, bool may, const Cache& c,
                    const Snapshot& before, const char* call) {
  ExpectErrorMessage(st);
  if (st != GQA_STATUS_OK) {
    if (!(c.Take() == before)) {
      fprintf(stderr, "%s failed (%s) and wrote the cache\n", call,
              gqa_status_name(st));
      Finding("a failed draft call wrote rows, table, lengths or held_from");
    }
    if (!must_fail && !may) {
      fprintf(stderr, "%s rejected: %s\n", call, gqa_last_error_message());
      Finding("a draft call rejected a valid call");
    }
    return false;
  }
  if (must_fail) {
    fprintf(stderr,
            "%s accepted an invalid call: v%d ring=%d B=%lld cap=%lld "
            "bad=%d len=%lld,%lld held=%s%lld,%lld\n",
            call, c.v2 ? 2 : 1, c.ring, (long long)c.B, (long long)c.cap, c.bad,
            (long long)before.ints[0], (long long)before.ints[c.B > 1 ? 1 : 0],
            c.held ? "" : "NULL ", (long long)before.ints[c.B],
            (long long)before.ints[2 * c.B - 1]);
    Finding("a draft call accepted an invalid call");
  }
  return !may;
}

inline void ExpectState(const Cache& c, const Snapshot& want,
                        const char* call) {
  const Snapshot got = c.Take();
  if (got.ints != want.ints) {
    for (size_t i = 0; i < got.ints.size(); ++i)
      if (got.ints[i] != want.ints[i])
        fprintf(stderr, "%s: ints[%zu] (B=%lld) = %lld, want %lld\n", call, i,
                (long long)c.B, (long long)got.ints[i],
                (long long)want.ints[i]);
    Finding("draft call: lengths / held_from not as the header says");
  }
  for (size_t i = 0; got.store != want.store && i < got.store.size(); ++i)
    if (got.store[i] != want.store[i]) {
      fprintf(stderr, "%s: store byte %zu = 0x%02x, want 0x%02x\n", call, i,
              got.store[i], want.store[i]);
      Finding("draft call: stored rows not as the header says");
    }
  if (got.table != want.table) Finding("draft call wrote the block table");
}

// An int64 array argument: its own buffer, or (hostile) NULL or an alias of
// the cache's lengths, held_from or rows. *overlap: it aliases the cache.
// `n` entries are read: an alias only where the aliased memory has them.
inline const int64_t* ArrayArg(Reader& r, Cache& c,
                               const std::vector<int64_t>& own, int64_t n,
                               bool* null, bool* overlap) {
  *null = *overlap = false;
  const int64_t* mine = own.empty() ? nullptr : own.data();
  if (!r.hostile || r.U8() < 232) return mine;
  const int w = r.U8() % 4;
  if (w == 0) {
    *null = true;
    return nullptr;
  }
  const size_t room = w == 3 ? c.bytes / 8 : c.ints.size() - (w == 2 ? c.B : 0);
  if (n < 0 || (size_t)n > room) return mine;
  *overlap = true;
  return w == 1   ? c.len
         : w == 2 ? c.ints.data() + c.B  // held_from (or where it would be)
                  : (const int64_t*)c.store;
}

inline bool TruncateOp(Reader& r, Cache& c) {
  std::vector<int64_t> nl((size_t)c.B);
  bool must_fail = c.bad || (c.ring && !c.held), bad_value = false;
  for (int64_t b = 0; b < c.B; ++b) {
    const bool sane = c.len[b] >= 0 && c.len[b] <= bc::kMaxPos;
    nl[b] = r.Dim(-1, sane ? c.len[b] + 1 : 0);
    if (r.U8() < 128 && sane) nl[b] = c.len[b] - r.U8() % 3;  // rejected
    bad_value |= nl[b] < 0 || nl[b] > c.len[b];
  }
  bool null = false, overlap = false;
  const int64_t* arg = ArrayArg(r, c, nl, c.B, &null, &overlap);
  must_fail |= null || (bad_value && !overlap);  // (an alias: its values)
  const Snapshot before = c.Take();
  const gqa_status st = c.Truncate(arg);
  if (!Outcome(st, must_fail, overlap || c.overlap, c, before, "truncate"))
    return false;
  // lengths = new_lengths; a ring's held_from never above its length.
  Snapshot want = before;
  for (int64_t b = 0; b < c.B; ++b) {
    want.ints[b] = nl[b];
    if (c.ring && want.ints[c.B + b] > nl[b]) want.ints[c.B + b] = nl[b];
  }
  ExpectState(c, want, "truncate");
  return true;
}

inline bool KeepOp(Reader& r, Cache& c) {
  int64_t b = r.Dim(0, c.B - 1);
  if (r.hostile && r.U8() >= 240) b = r.Bit() ? -1 : c.B;
  const bool b_ok = b >= 0 && b < c.B;
  const int64_t lb = b_ok ? c.len[b] : 0;
  const int64_t from = b_ok && !c.bad ? c.HeldFrom(b) : 0;
  const int64_t avail = lb - from < 8 ? lb - from : 8;
  int64_t drafts = 0;
  const int dm = r.U8() % 4;
  if (dm == 0)
    drafts = avail + 1 + r.U8() % 2;  // not all held, or past the length
  else if (dm == 1)
    drafts = r.Dim(0, lb < 8 ? lb : 8);
  else
    drafts = avail > 0 ? r.Dim(0, avail) : 0;
  if (r.hostile && r.U8() >= 240) drafts = r.Dim(-2, 2);
  std::vector<int64_t> idx;
  for (int64_t d = 0; d < drafts && d < 16; ++d)
    if (r.Bit()) idx.push_back(d);
  int64_t count = (int64_t)idx.size();
  const uint8_t bm = r.U8();  // one in four breaks the indices
  if (bm >= 192) {
    const int w = bm % 6;
    if (w == 0 && count >= 2) std::swap(idx[0], idx[1]);  // not ascending
    if (w == 1 && count >= 1) idx.push_back(idx.back()), ++count;  // repeat
    if (w == 2) idx.push_back(drafts), ++count;                    // too big
    if (w == 3 && count >= 1) idx[0] = -1;
    if (w == 4) count = -1 - (bm & 1);
    if (w == 5) count = count + 1;  // one index past the array: kept NULL
  }
  bool null = false, overlap = false;
  std::vector<int64_t> own = idx;
  const int64_t* arg = ArrayArg(r, c, own, count, &null, &overlap);
  if (bm >= 192 && bm % 6 == 5) arg = nullptr, null = true;
  if (count == 0 && r.Bit()) arg = nullptr, null = false;  // NULL, count 0
  const bool d_ok = drafts >= 0 && drafts <= lb;
  bool must_fail = c.bad || (c.ring && !c.held) || !b_ok || !d_ok ||
                   count < 0 || count > drafts || (count > 0 && null) ||
                   (d_ok && lb - drafts < from);
  for (int64_t j = 0; !overlap && arg && j < count && j < (int64_t)idx.size();
       ++j)
    must_fail |= idx[j] < (j > 0 ? idx[j - 1] + 1 : 0) || idx[j] >= drafts;
  const Snapshot before = c.Take();
  // The library's read-back of the kept drafts (v2), to compare after.
  const int64_t base = d_ok ? lb - drafts : 0;
  std::vector<float> rows_before;
  const bool read = c.v2 && !must_fail && !overlap && !c.overlap;
  std::vector<float> kr((size_t)c.D), vr((size_t)c.D);
  for (int64_t j = 0; read && j < count; ++j)
    for (int64_t g = 0; g < c.Hkv; ++g) {
      if (gqa_block_cache_read(&c.bc, b, base + idx[j], g, kr.data(),
                               vr.data()) != GQA_STATUS_OK)
        Finding("gqa_block_cache_read failed on a held draft");
      rows_before.insert(rows_before.end(), kr.begin(), kr.end());
      rows_before.insert(rows_before.end(), vr.begin(), vr.end());
    }
  const gqa_status st = c.Keep(b, drafts, arg, count);
  if (!Outcome(st, must_fail, overlap || c.overlap, c, before, "keep"))
    return false;
  // Draft indices[j] moves to base + j (ascending j), its rows as stored.
  Snapshot want = before;
  for (int64_t j = 0; j < count; ++j)
    if (idx[j] != j)
      c.MoveToken(want.store.data(), b, c.Slot(base + idx[j]),
                  c.Slot(base + j));
  want.ints[b] = lb - drafts + count;
  ExpectState(c, want, "keep");
  for (int64_t j = 0, at = 0; read && j < count; ++j)
    for (int64_t g = 0; g < c.Hkv; ++g, at += 2 * c.D) {
      if (gqa_block_cache_read(&c.bc, b, base + j, g, kr.data(), vr.data()) !=
          GQA_STATUS_OK)
        Finding("gqa_block_cache_read failed on a kept draft");
      for (int64_t i = 0; i < c.D; ++i)
        if (!bc::SameFloat(kr[i], rows_before[at + i]) ||
            !bc::SameFloat(vr[i], rows_before[at + c.D + i]))
          Finding("keep: a kept draft reads back other than it was");
    }
  return true;
}

// Append of n tokens to every sequence (counts NULL): a ring's held_from
// rises to len - C where the ring overwrote older positions.
inline bool AppendOp(Reader& r, Rng& rng, Cache& c) {
  int64_t n = r.Dim(0, 3);
  if (r.hostile && r.U8() >= 240) n = -1;
  if (n > 3) return false;  // huge appends: the cache families'
  bool must_fail = c.bad || n < 0;
  for (int64_t b = 0; b < c.B && n >= 0 && !c.bad; ++b) {
    if (!c.ring && c.len[b] + n > c.cap) must_fail = true;
    if (!c.v2 && c.ring && n > c.cap) must_fail = true;
    if (c.len[b] + n > bc::kMaxPos) must_fail = true;  // positions < 2^24
  }
  const int64_t row = c.Hkv * c.D;
  std::vector<float> k((size_t)(c.B * (n > 0 ? n : 1) * row));
  std::vector<float> v(k.size());
  for (size_t i = 0; i < k.size(); ++i)
    k[i] = (float)rng.Uniform(), v[i] = (float)rng.Uniform();
  // With RoPE (append_rope): the model stores gqa_rope's rows.
  Rope rope;
  DrawRope(r, c.D, &rope);
  std::vector<int64_t> from;  // positions lengths[b] + i (a bad cache: 0)
  for (int64_t b = 0; b < c.B; ++b) from.push_back(c.bad ? 0 : c.len[b]);
  DrawPositions(r, rng, c.B, n > 0 ? n : 0, from.data(), &rope);
  std::vector<float> kr;
  if (rope.on && n >= 0 &&
      !RopeRows(rope, c.B, n, c.Hkv, c.D, from.data(), k.data(), GQA_DTYPE_F32,
                &kr))
    must_fail = true;
  const float* kw = rope.on && !must_fail ? kr.data() : k.data();
  const Snapshot before = c.Take();
  const gqa_status st =
      rope.on ? c.AppendRope(
                    n, k.data(), v.data(), &rope.p,
                    rope.explicit_positions ? rope.positions.data() : nullptr)
              : c.Append(n, k.data(), v.data());
  if (!Outcome(st, must_fail, c.overlap, c, before,
               rope.on ? "append_rope" : "append"))
    return false;
  Snapshot want = before;
  for (int64_t b = 0; b < c.B; ++b) {
    for (int64_t j = c.ring && n > c.cap ? n - c.cap : 0; j < n; ++j)
      for (int64_t g = 0; g < c.Hkv; ++g) {
        const int64_t src = (b * n + j) * row + g * c.D;
        c.Encode(want.store.data(), b, c.Slot(before.ints[b] + j), g, &kw[src],
                 &v[src]);
      }
    want.ints[b] = before.ints[b] + n;
    int64_t& hf = want.ints[c.B + b];
    if (c.ring && c.held && hf < want.ints[b] - c.cap)
      hf = want.ints[b] - c.cap;
  }
  // A shared block is written by both sequences: order is the library's.
  if (c.shared) want.store = c.Take().store;
  ExpectState(c, want, rope.on ? "append_rope" : "append");
  return true;
}

// The tree mask [B, T, T]: none, a chain, a random tree (each draft sees
// its ancestors and itself) or random bits (rows without the diagonal).
inline std::vector<uint8_t> TreeMask(Reader& r, Rng& rng, int64_t B,
                                     int64_t T) {
  std::vector<uint8_t> m;
  const int mode = r.U8() % 4;
  if (mode == 0) return m;
  m.assign((size_t)(B * T * T), 0);
  for (int64_t b = 0; b < B; ++b) {
    uint8_t* t = &m[b * T * T];
    for (int64_t i = 0; i < T; ++i) {
      if (mode == 3) {
        for (int64_t j = 0; j < T; ++j) t[i * T + j] = rng.Next() % 3 == 0;
        continue;
      }
      const int64_t parent =
          mode == 1 ? i - 1 : (int64_t)(rng.Next() % (i + 1)) - 1;
      if (parent >= 0)
        for (int64_t j = 0; j < T; ++j) t[i * T + j] = t[parent * T + j];
      t[i * T + i] = 1;
    }
  }
  return m;
}

inline bool AttendOp(Reader& r, Rng& rng, Cache& c) {
  gqa_kv_attend_params a = {};
  const int64_t T = r.Dim(1, 4), Hq = Group(c.Hkv, r.U8() % 3);
  if (T < 1 || T > 4 || Hq < 1 || Hq > 6) return false;  // the others'
  a.q_len = T, a.q_heads = Hq;
  a.q_dtype = r.U8() % 2, a.out_dtype = r.U8() % 2;
  a.scale = r.Bit() ? 0.0f : r.Param(0.05f, 2.0f);
  const int64_t W = r.Bit() ? 0 : r.Dim(0, 9);
  a.sliding_window = W;
  a.fully_masked_policy = r.U8() % 3;
  const std::vector<uint8_t> tree = TreeMask(r, rng, c.B, T);
  a.tree_mask = tree.empty() ? nullptr : tree.data();
  const int64_t threads = 1 + r.U8() % 2;
  const bool use_pool = r.Bit();
  bool must_fail = c.bad || !(a.scale >= 0) || isinf(a.scale) || W < 0 ||
                   (c.ring && (W == 0 || i128{W} + T - 1 > c.cap));
  // A linear cache's window of 2^24 or more acts as none (kv_cache.h).
  const int64_t Wr = !c.ring && W >= bc::kMaxPos ? 0 : W;
  for (int64_t b = 0; b < c.B && !c.bad; ++b) {
    const int64_t lb = c.len[b], from = c.HeldFrom(b);
    must_fail |= lb < T;
    // Query 0 (position lb - T) reads back to lb - T - W + 1 (no window:
    // 0): those positions must be held.
    i128 need = Wr > 0 ? i128{lb} - T - Wr + 1 : 0;
    need = need > 0 ? need : 0;
    must_fail |= from > 0 && need < from;
  }
  Tensor q = MakeTensor(c.B * T * Hq * c.D, a.q_dtype, rng, 1.0);
  Tensor out = MakeTensor(c.B * T * Hq * c.D, a.out_dtype, rng, 0);
  a.q = q.data(), a.out = out.data();
  // q_rope: the queries as gqa_rope gives them, at lengths[b] - T + t.
  Rope rope;
  DrawRope(r, c.D, &rope);
  std::vector<int64_t> qfrom;
  for (int64_t b = 0; b < c.B; ++b)  // (-1: the call fails anyway)
    qfrom.push_back(c.bad || c.len[b] < T ? -1 : c.len[b] - T);
  DrawPositions(r, rng, c.B, T, qfrom.data(), &rope);
  std::vector<float> qr;
  if (rope.on) {
    a.q_rope = &rope.p;
    a.q_positions = rope.explicit_positions ? rope.positions.data() : nullptr;
    must_fail |= !RopeRows(rope, c.B, T, Hq, c.D, qfrom.data(), q.data(),
                           a.q_dtype, &qr);
  }
  size_t ws_size = 0;
  gqa_status st = c.WorkspaceSize(&a, threads, &ws_size);
  ExpectErrorMessage(st);
  Workspace ws;
  if (!ws.Make(st == GQA_STATUS_OK ? ws_size : 64, 0, threads == 1))
    return false;
  if (r.hostile && r.U8() >= 232) {  // tree_mask or q_positions inside out
    const bool pos = rope.on && r.Bit();
    const size_t need = (size_t)(c.B * T * (pos ? 8 : T));
    if (need <= out.bytes.size()) {
      if (pos) a.q_positions = (const int64_t*)out.data();
      if (!pos) a.tree_mask = (const uint8_t*)out.data();
      must_fail = true;
    }
  }
  Poison(out.bytes);
  const std::vector<uint8_t> out0 = out.bytes;
  const Snapshot before = c.Take();
  st = c.Attend(&a, ws.ptr, ws.size, use_pool ? Pool() : nullptr);
  if (st != GQA_STATUS_OK) ExpectUnchanged(out.bytes, out0, "out (tree)");
  if (!Outcome(st, must_fail, c.overlap, c, before, "attend")) return false;
  ExpectState(c, before, "attend");
  if (rope.on) ExpectUnfusedRope(c, a, qr, out, ws, threads, use_pool);
  if (!(a.scale <= 2.0f)) return true;

  // The oracle over dense positions [0, S): held rows as stored, others 0
  // (never visible: a valid call's window stays within the held ones).
  gqa::reference::AttentionCall ref;
  int64_t S = 0;
  for (int64_t b = 0; b < c.B; ++b) S = c.len[b] > S ? c.len[b] : S;
  if (S > 64) return true;  // (a ring at 2^24 positions)
  ref.batch = c.B, ref.q_len = T, ref.kv_len = S;
  ref.q_heads = Hq, ref.kv_heads = c.Hkv, ref.head_dim = c.D;
  ref.scale = a.scale > 0 ? a.scale : 1.0 / sqrt((double)c.D);
  ref.causal = true, ref.sliding_window = Wr;
  ref.tree_mask = tree;
  ref.fully_masked_uniform = a.fully_masked_policy != GQA_FULLY_MASKED_ZERO;
  ref.q.resize((size_t)(c.B * T * Hq * c.D));
  for (size_t i = 0; i < ref.q.size(); ++i)
    ref.q[i] = rope.on ? qr[i] : q.Get((int64_t)i);
  if (c.rotate)
    for (size_t i = 0; i < ref.q.size(); i += (size_t)c.D)
      bc::Hadamard64(&ref.q[i], c.D);
  ref.k.assign((size_t)(c.B * S * c.Hkv * c.D), 0.0);
  ref.v = ref.k;
  std::vector<float> kr((size_t)c.D), vr((size_t)c.D);
  for (int64_t b = 0; b < c.B; ++b) {
    ref.key_lengths.push_back(c.len[b]);
    ref.position_offsets.push_back(c.len[b] - T);
    ref.held_from.push_back(c.HeldFrom(b));
    for (int64_t p = c.HeldFrom(b); p < c.len[b]; ++p)
      for (int64_t g = 0; g < c.Hkv; ++g) {
        c.Decode(c.store, b, c.Slot(p), g, kr.data(), vr.data());
        for (int64_t i = 0; i < c.D; ++i) {
          ref.k[((b * S + p) * c.Hkv + g) * c.D + i] = kr[i];
          ref.v[((b * S + p) * c.Hkv + g) * c.D + i] = vr[i];
        }
      }
  }
  std::vector<double> want = gqa::reference::Attention(ref).out;
  if (c.rotate)
    for (size_t i = 0; i < want.size(); i += (size_t)c.D)
      bc::Hadamard64(&want[i], c.D);
  double tol = a.q_dtype || a.out_dtype || c.dt == GQA_DTYPE_F16 ? 1e-2 : 1e-4;
  if (c.rotate || c.dt >= GQA_DTYPE_Q8) tol = tol > 1e-3 ? tol : 1e-3;
  for (int64_t i = 0; i < (int64_t)want.size(); ++i)
    ExpectClose(out.Get(i), want[i], tol, "tree attend out", i);
  if (getenv("GQA_FUZZ_DEBUG"))
    fprintf(stderr,
            "drafts attend: %zu values checked (tree %d, v%d, rope %d)\n",
            want.size(), !tree.empty(), c.v2 ? 2 : 1, rope.on);
  return true;
}

// The read-back (v2) of a position near the held ones: below held_from
// (truncated or kept away) or from the length on, it must fail.
inline bool ReadOp(Reader& r, Cache& c) {
  const int64_t b = r.Dim(0, c.B - 1);
  if (b < 0 || b >= c.B || c.bad) return false;
  const int64_t lb = c.len[b], from = c.HeldFrom(b);
  const int64_t p = from - 2 + r.U8() % (lb - from + 4);
  const int64_t g = r.U8() % c.Hkv;
  const bool must_fail = p < from || p >= lb;
  std::vector<float> kr((size_t)c.D, -12345.0f), vr(kr), ke(kr), ve(kr);
  const std::vector<float> kr0 = kr;
  const Snapshot before = c.Take();
  const gqa_status st =
      gqa_block_cache_read(&c.bc, b, p, g, kr.data(), vr.data());
  const bool go = Outcome(st, must_fail, c.overlap, c, before, "read");
  if (st != GQA_STATUS_OK) {
    if (kr != kr0 || vr != kr0) Finding("failed read wrote k_row / v_row");
    return true;  // nothing changed: go on
  }
  if (!go) return false;
  ExpectState(c, before, "read");
  c.Decode(c.store, b, c.Slot(p), g, ke.data(), ve.data());
  for (int64_t i = 0; i < c.D; ++i)
    if (!bc::SameFloat(kr[i], ke[i]) || !bc::SameFloat(vr[i], ve[i]))
      Finding("read-back after truncate / keep differs from the stored row");
  return true;
}

}  // namespace drafts

// A cache, then up to four draft-verification calls on it.
inline void FuzzDrafts(Reader& r, Rng& rng) {
  drafts::Cache c;
  if (!drafts::BuildCache(r, rng, &c)) return;
  const int ops = 1 + r.U8() % 4;
  for (int i = 0; i < ops; ++i) {
    const int op = r.U8() % 5;  // 4: a v2 read-back (v1: an attend)
    const bool go = op == 0           ? drafts::TruncateOp(r, c)
                    : op == 1         ? drafts::KeepOp(r, c)
                    : op == 2         ? drafts::AppendOp(r, rng, c)
                    : op == 4 && c.v2 ? drafts::ReadOp(r, c)
                                      : drafts::AttendOp(r, rng, c);
    if (!go || c.bad) return;
    if (getenv("GQA_FUZZ_DEBUG"))
      fprintf(stderr,
              "drafts: op %d on v%d ring=%d B=%lld cap=%lld len0=%lld\n", op,
              c.v2 ? 2 : 1, c.ring, (long long)c.B, (long long)c.cap,
              (long long)c.len[0]);
  }
}

}  // namespace gqa_fuzz

#endif  // GQA_TESTS_FUZZ_FUZZ_DRAFTS_H_
