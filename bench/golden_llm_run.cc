// Running kv golden cases of the LLM format through the KV cache v2 API
// (see golden_llm.h; loading the cases is in golden_llm.cc).
#include <math.h>
#include <pthreadpool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <memory>
#include <set>

#include "bench/golden_llm.h"
#include "gqa/block_cache.h"
#include "gqa/gqa.h"
#include "src/half.h"
#include "src/reference/closeness.h"

namespace gqa {

// Defined in golden_llm.cc.
std::string LlmShapeString(const std::vector<int64_t>& shape);

namespace {

struct FreeDeleter {
  void operator()(void* p) const { free(p); }
};
using AlignedBuffer = std::unique_ptr<unsigned char, FreeDeleter>;

AlignedBuffer AlignedAlloc(size_t bytes) {
  const size_t rounded = (bytes + 63) / 64 * 64;
  return AlignedBuffer(
      static_cast<unsigned char*>(aligned_alloc(64, rounded ? rounded : 64)));
}

struct PoolDeleter {
  void operator()(pthreadpool_t p) const {
    if (p) pthreadpool_destroy(p);
  }
};

std::string Lengths(const std::vector<int64_t>& l) { return LlmShapeString(l); }

std::vector<uint16_t> Halves(const std::vector<float>& x) {
  std::vector<uint16_t> h(x.size());
  for (size_t i = 0; i < x.size(); ++i) h[i] = FloatToHalf(x[i]);
  return h;
}

std::string LastError(gqa_status st) {
  return std::string(gqa_status_name(st)) + ": " + gqa_last_error_message();
}

uint32_t Bits(float f) {
  uint32_t b;
  memcpy(&b, &f, 4);
  return b;
}

// Index of the first element of got that differs from want bit for bit (a
// NaN matches any NaN), or -1.
int64_t FirstBitMismatch(const std::vector<float>& got,
                         const std::vector<float>& want) {
  for (size_t i = 0; i < got.size(); ++i) {
    if (isnan(got[i]) && isnan(want[i])) continue;
    if (Bits(got[i]) != Bits(want[i])) return static_cast<int64_t>(i);
  }
  return -1;
}

// The step loop of RunKvCase; returns "" on success, else what failed.
class KvRunner {
 public:
  KvRunner(const LlmCase& c, int64_t block_tokens, int threads,
           std::vector<std::vector<float>>* attend_outputs)
      : c_(c),
        block_tokens_(block_tokens),
        threads_(threads),
        attend_outputs_(attend_outputs) {}

  std::string Run(double* max_abs_err);

 private:
  std::string Step(const LlmKvStep& s);
  std::string Append(const LlmKvStep& s, gqa_status* st);
  std::string Attend(const LlmKvStep& s, gqa_status* st);
  std::string Read(const LlmKvStep& s, gqa_status* st);
  std::string Truncate(const LlmKvStep& s, gqa_status* st);
  std::string Keep(const LlmKvStep& s, gqa_status* st);

  const LlmCase& c_;
  int64_t block_tokens_;
  int threads_;
  std::vector<std::vector<float>>* attend_outputs_;
  gqa_block_cache_layout layout_{};
  AlignedBuffer pool_;
  size_t pool_bytes_ = 0;
  std::vector<int32_t> table_;
  std::vector<int64_t> lengths_, held_from_;
  gqa_block_cache cache_{};
  std::unique_ptr<pthreadpool, PoolDeleter> threadpool_;
  double max_abs_err_ = 0.0;
};

std::string KvRunner::Run(double* max_abs_err) {
  const LlmKvCacheSpec& k = c_.cache;
  gqa_block_cache_config config{};
  config.batch = k.B;
  config.kv_heads = k.Hkv;
  config.head_dim = k.D;
  config.value_dim = k.Dv;
  config.capacity = k.capacity;
  config.block_tokens = block_tokens_;
  config.dtype = k.dtype == "f32"   ? GQA_DTYPE_F32
                 : k.dtype == "f16" ? GQA_DTYPE_F16
                 : k.dtype == "q8"  ? GQA_DTYPE_Q8
                                    : GQA_DTYPE_Q4;
  config.flags = (k.ring ? GQA_BLOCK_CACHE_RING : 0u) |
                 (k.rotate ? GQA_BLOCK_CACHE_ROTATE : 0u);
  const gqa_status st = gqa_block_cache_layout_of(&config, &layout_);
  if (k.expect_error) {
    if (st == GQA_STATUS_OK) {
      return "cache: created, but the reference refuses it (" + k.error + ")";
    }
    return "";
  }
  if (st != GQA_STATUS_OK) return "cache: layout_of failed: " + LastError(st);
  if (layout_.block_bytes <= 0 || layout_.block_bytes % 64 != 0 ||
      layout_.table_columns !=
          (k.capacity + block_tokens_ - 1) / block_tokens_) {
    return "cache: implausible layout (block_bytes " +
           std::to_string(layout_.block_bytes) + ", table_columns " +
           std::to_string(layout_.table_columns) + ")";
  }
  const int64_t blocks = k.B * layout_.table_columns;
  pool_bytes_ = static_cast<size_t>(blocks * layout_.block_bytes);
  pool_ = AlignedAlloc(pool_bytes_);
  if (!pool_) return "cache: cannot allocate the pool";
  // 0xFF bytes: NaN as f32/f16, code -1 as q8: a read of a slot never
  // written shows in the output.
  memset(pool_.get(), 0xFF, pool_bytes_);
  table_.resize(static_cast<size_t>(blocks));
  for (int64_t i = 0; i < blocks; ++i) {
    table_[i] = static_cast<int32_t>(blocks - 1 - i);  // reversed
  }
  lengths_.assign(static_cast<size_t>(k.B), 0);
  cache_.config = config;
  cache_.blocks = pool_.get();
  cache_.num_blocks = blocks;
  cache_.block_table = table_.data();
  cache_.lengths = lengths_.data();
  held_from_.assign(static_cast<size_t>(k.B), 0);
  cache_.held_from = held_from_.data();
  threadpool_.reset(pthreadpool_create(static_cast<size_t>(threads_)));
  if (!threadpool_) return "cannot create a pthreadpool";
  for (size_t i = 0; i < c_.steps.size(); ++i) {
    const std::string why = Step(c_.steps[i]);
    if (!why.empty()) {
      return "step " + std::to_string(i) + " (" + c_.steps[i].op +
             (c_.steps[i].expect_error ? ", expect_error" : "") + "): " + why;
    }
  }
  *max_abs_err = max_abs_err_;
  return "";
}

std::string KvRunner::Step(const LlmKvStep& s) {
  const std::vector<int64_t> before = lengths_;
  const std::vector<int32_t> table_before = table_;
  std::vector<unsigned char> pool_before;
  // Only append and keep write rows (truncate changes lengths only).
  const bool read_only = s.op != "append" && s.op != "keep";
  if (s.expect_error || read_only) {
    pool_before.assign(pool_.get(), pool_.get() + pool_bytes_);
  }
  gqa_status st = GQA_STATUS_OK;
  std::string why;
  if (s.op == "append") {
    why = Append(s, &st);
  } else if (s.op == "attend") {
    why = Attend(s, &st);
  } else if (s.op == "read") {
    why = Read(s, &st);
  } else if (s.op == "truncate") {
    why = Truncate(s, &st);
  } else if (s.op == "keep") {
    why = Keep(s, &st);
  } else {
    return "op " + s.op + " is not in the API";  // LlmKvUnsupportedReason
  }
  if (s.expect_error) {
    if (st == GQA_STATUS_OK) {
      return "succeeded, but the reference refuses it (" + s.error + ")";
    }
    why.clear();  // a refused call's outputs are not compared
  } else if (st != GQA_STATUS_OK) {
    return LastError(st);
  }
  if (!why.empty()) return why;
  if (table_ != table_before) return "the call changed the block table";
  if (!pool_before.empty() &&
      memcmp(pool_before.data(), pool_.get(), pool_bytes_) != 0) {
    return s.expect_error ? "the refused call changed the pool"
                          : "the call changed the pool";
  }
  if (s.expect_error && lengths_ != before) {
    return "the refused call changed the lengths from " + Lengths(before) +
           " to " + Lengths(lengths_);
  }
  if (lengths_ != s.lengths_after) {
    return "lengths " + Lengths(lengths_) + ", want " +
           Lengths(s.lengths_after);
  }
  return "";
}

std::string KvRunner::Append(const LlmKvStep& s, gqa_status* st) {
  const LlmArray& k = *s.Find("k");
  const LlmArray& v = *s.Find("v");
  const LlmArray* counts = s.Find("counts");
  const int32_t src = s.src_dtype == "f16" ? GQA_DTYPE_F16 : GQA_DTYPE_F32;
  std::vector<uint16_t> kh, vh;
  const void* kp = k.f32.data();
  const void* vp = v.f32.data();
  if (src == GQA_DTYPE_F16) {
    kh = Halves(k.f32);
    vh = Halves(v.f32);
    kp = kh.data();
    vp = vh.data();
  }
  *st = gqa_block_cache_append(
      &cache_, s.n, counts ? counts->i64.data() : nullptr, kp, vp, src);
  return "";
}

std::string KvRunner::Attend(const LlmKvStep& s, gqa_status* st) {
  const LlmArray& q = *s.Find("q");
  const LlmKvCacheSpec& k = c_.cache;
  std::vector<uint16_t> qh;
  gqa_kv_attend_params p{};
  p.q_len = s.T;
  p.q_heads = s.Hq;
  p.q_dtype = s.q_dtype == "f16" ? GQA_DTYPE_F16 : GQA_DTYPE_F32;
  p.q = q.f32.data();
  if (p.q_dtype == GQA_DTYPE_F16) {
    qh = Halves(q.f32);
    p.q = qh.data();
  }
  // Poisoned: an element the call does not write fails the comparison.
  std::vector<float> out(static_cast<size_t>(k.B * s.T * s.Hq * k.Dv),
                         -7.75e30f);
  p.out = out.data();
  p.out_dtype = GQA_DTYPE_F32;
  p.scale = static_cast<float>(s.scale);
  p.sliding_window = s.window;
  p.fully_masked_policy =
      s.policy == "uniform" ? GQA_FULLY_MASKED_UNIFORM : GQA_FULLY_MASKED_ZERO;
  p.softcap = static_cast<float>(s.softcap);
  if (const LlmArray* a = s.Find("alibi")) p.alibi_slopes = a->f32.data();
  if (const LlmArray* a = s.Find("sinks")) p.sinks = a->f32.data();
  if (const LlmArray* a = s.Find("tree")) p.tree_mask = a->u8.data();
  size_t ws_size = 0;
  *st = gqa_block_cache_attend_workspace_size(&cache_, &p, threads_, &ws_size);
  if (*st != GQA_STATUS_OK) return "";
  AlignedBuffer ws = AlignedAlloc(ws_size);
  if (!ws) return "cannot allocate a workspace of " + std::to_string(ws_size);
  *st =
      gqa_block_cache_attend(&cache_, &p, ws.get(), ws_size, threadpool_.get());
  if (*st != GQA_STATUS_OK || s.expect_error) return "";
  if (attend_outputs_) attend_outputs_->push_back(out);
  // NaN where both are NaN counts as equal: mask those pairs out.
  std::vector<float> got = out, want = s.Find("out")->f32;
  for (size_t i = 0; i < got.size(); ++i) {
    if (isnan(got[i]) && isnan(want[i])) got[i] = want[i] = 0.0f;
  }
  const reference::Closeness cmp =
      reference::Compare(got, want, s.tolerance.rtol, s.tolerance.atol);
  if (!(cmp.max_abs_err <= max_abs_err_)) max_abs_err_ = cmp.max_abs_err;
  return cmp.pass() ? "" : cmp.Describe("out");
}

std::string KvRunner::Truncate(const LlmKvStep& s, gqa_status* st) {
  *st = gqa_block_cache_truncate(&cache_, s.Find("lengths")->i64.data());
  return "";
}

std::string KvRunner::Keep(const LlmKvStep& s, gqa_status* st) {
  const LlmArray& idx = *s.Find("indices");
  *st = gqa_block_cache_keep(&cache_, s.batch, s.T, idx.i64.data(),
                             static_cast<int64_t>(idx.i64.size()));
  return "";
}

std::string KvRunner::Read(const LlmKvStep& s, gqa_status* st) {
  const LlmKvCacheSpec& k = c_.cache;
  std::vector<float> kr(static_cast<size_t>(k.D), -7.75e30f);
  std::vector<float> vr(static_cast<size_t>(k.Dv), -7.75e30f);
  *st = gqa_block_cache_read(&cache_, s.batch, s.position, s.head, kr.data(),
                             vr.data());
  if (*st != GQA_STATUS_OK || s.expect_error) return "";
  for (int which = 0; which < 2; ++which) {
    const std::vector<float>& got = which == 0 ? kr : vr;
    const std::vector<float>& want = s.Find(which ? "v_row" : "k_row")->f32;
    const int64_t i = FirstBitMismatch(got, want);
    if (i >= 0) {
      char buf[200];
      snprintf(buf, sizeof(buf),
               "%s row of batch %lld position %lld head %lld: element %lld "
               "is %.9g (0x%08X), want %.9g (0x%08X)",
               which ? "v" : "k", static_cast<long long>(s.batch),
               static_cast<long long>(s.position),
               static_cast<long long>(s.head), static_cast<long long>(i),
               got[i], Bits(got[i]), want[i], Bits(want[i]));
      return buf;
    }
  }
  return "";
}

}  // namespace

std::string LlmKvUnsupportedReason(const LlmCase& c) {
  if (c.kind != "kv") return "kind " + c.kind + " is not a kv case";
  if (c.cache.expect_error) return "";  // only creation is checked
  static const std::set<std::string> kKnown[] = {
      {"k", "v", "counts"},
      {"q", "out", "alibi", "sinks", "tree"},
      {"k_row", "v_row"},
      {"lengths"},
      {"indices"}};
  for (size_t i = 0; i < c.steps.size(); ++i) {
    const LlmKvStep& s = c.steps[i];
    const std::string at = " (step " + std::to_string(i) + ")";
    const std::set<std::string>& known = kKnown[s.op == "append"     ? 0
                                                : s.op == "attend"   ? 1
                                                : s.op == "read"     ? 2
                                                : s.op == "truncate" ? 3
                                                                     : 4];
    for (const auto& f : s.files) {
      if (known.count(f.first)) continue;
      return s.op + " input '" + f.first + "' is not in the API" + at;
    }
    if (!s.other_options.empty()) {
      return "attend option '" + s.other_options[0] + "' is not in the API" +
             at;
    }
  }
  return "";
}

LlmResult RunKvCase(const LlmCase& c, int64_t block_tokens, int threads,
                    std::vector<std::vector<float>>* attend_outputs) {
  LlmResult r;
  const std::string why = LlmKvUnsupportedReason(c);
  if (!why.empty()) {
    r.outcome = LlmOutcome::kSkipped;
    r.message = "skipped: " + why;
    return r;
  }
  if (block_tokens < 1 || block_tokens > 4096 || threads < 1) {
    r.message = "block_tokens must be in [1, 4096] and threads >= 1";
    return r;
  }
  KvRunner runner(c, block_tokens, threads, attend_outputs);
  const std::string fail = runner.Run(&r.max_abs_err);
  if (!fail.empty()) {
    r.message = fail;
    return r;
  }
  r.outcome = LlmOutcome::kPassed;
  char buf[160];
  if (c.cache.expect_error) {
    snprintf(buf, sizeof(buf), "creation refused as expected");
  } else {
    snprintf(buf, sizeof(buf), "%zu steps, block_tokens %lld, max_abs_err %.3e",
             c.steps.size(), static_cast<long long>(block_tokens),
             r.max_abs_err);
  }
  r.message = buf;
  return r;
}

}  // namespace gqa
