// gqa-bench's command line: presets and strict parsing of every option.
#include "bench/bench_options.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <iterator>
#include <utility>

namespace gqa {
namespace {

const Shape kPresets[] = {
    {"P1", 1, 8, 2, 64, 512, 512, true, false, 0},
    {"P2", 1, 32, 8, 128, 1024, 1024, true, false, 0},
    {"P3", 1, 14, 2, 64, 2048, 2048, true, false, 0},
    {"N1", 2, 8, 2, 64, 256, 256, false, false, 0},
    // Whole-layer cases (projections through XNNPACK or the f16 GEMM).
    {"L1", 1, 8, 2, 64, 128, 128, true, true, 512},
    {"L2", 4, 4, 1, 32, 64, 96, false, true, 128},
    // KV-cache decode, one new token (T = 1) against S cached ones.
    {"D1", 1, 32, 8, 128, 1, 4096, true, false, 0, true},
    {"D2", 1, 14, 2, 64, 1, 8192, true, false, 0, true},
    {"D3", 4, 8, 2, 64, 1, 1024, true, false, 0, true},
};

// The whole of s as a base-10 integer in [lo, hi].
bool ParseInt(const char* s, long long lo, long long hi, long long* out) {
  if (!isdigit(static_cast<unsigned char>(*s)) && *s != '-') return false;
  char* end = nullptr;
  errno = 0;
  const long long v = strtoll(s, &end, 10);
  if (errno != 0 || *end != '\0' || v < lo || v > hi) return false;
  *out = v;
  return true;
}

}  // namespace

std::vector<Shape> DecodePresets() {
  std::vector<Shape> d;
  for (const Shape& p : kPresets) {
    if (p.decode) d.push_back(p);
  }
  return d;
}

std::vector<Shape> DecodeShapesOf(const Options& o) {
  std::vector<Shape> shapes;
  for (const Shape& s : o.shapes) {
    if (s.decode) shapes.push_back(s);
  }
  return shapes.empty() ? DecodePresets() : shapes;
}

std::string DecodeShapeLabel(const Shape& s, int64_t T) {
  char shape[96];
  snprintf(shape, sizeof(shape), "B%lld Hq%lld Hkv%lld D%lld T%lld S%lld",
           (long long)s.batch, (long long)s.q_heads, (long long)s.kv_heads,
           (long long)s.head_dim, (long long)T, (long long)s.kv_len);
  return shape;
}

const char kBenchUsage[] =
    "usage: gqa-bench [--preset P1|P2|P3|N1|L1|L2|D1|D2|D3]... [--batch N "
    "--q-heads N\n"
    "  --kv-heads N --head-dim N --q-len N --kv-len N [--causal]]\n"
    "  [--dtype f32|f16] [--threads N] [--reps N] [--cold] [--json FILE]\n"
    "  [--cache [--block-tokens N] [--chunk N]] [--accuracy]\n"
    "  [--softcap C] [--sinks] [--rope] [--drafts] [--cpus LIST]...\n"
    "  [--target NAME] [--platform-kernels off|exact|on]\n"
    "  --cpus LIST (4-7, 0,2): pin the run and its thread pool there\n"
    "  (--threads defaults to the CPU count); several --cpus run one\n"
    "  after another, labelled, into one JSON. --target NAME: force a\n"
    "  Highway target (AVX2, SSE4, NEON, SVE, SCALAR...) for A/B runs;\n"
    "  --platform-kernels: gqa's per-ISA kernels off, exact (those that keep\n"
    "  the f32 path's accuracy: the integer q.k) or on (default: FMLAL for\n"
    "  f16 K/V too, q and p rounded to f16; platforms/platform_kernels.h).\n"
    "  --cache: the decode presets (or those named) through the v2 block\n"
    "  cache in f32/f16/q8/q4, with and without rotation, T = 1 and 4, and\n"
    "  a chunked prefill (T = S = 1024, D 128) against q8 and f16 caches;\n"
    "  --accuracy: q8/q4 (+rotation) output error and softmax KL vs f32.\n"
    "  --softcap C (C > 0), --sinks (0.5 per head): the core cases run with\n"
    "  these logit options (the oracle check too) and without them, rep by\n"
    "  rep in alternating order: the paired on/off ratio.\n"
    "  --rope: decode steps (append 1 token + attend) of the decode presets\n"
    "  (or those named) through the block cache, RoPE fused vs none.\n"
    "  --drafts: 4 drafts verified (append, chain tree mask, truncate) vs\n"
    "  one decode step, the decode presets (or those named), block cache.\n";

bool ParseBenchArgs(int argc, char** argv, Options* o, std::string* error) {
  Shape custom;
  custom.name = "custom";
  bool have_custom = false;
  const std::pair<const char*, int64_t*> dims[] = {
      {"--batch", &custom.batch},       {"--q-heads", &custom.q_heads},
      {"--kv-heads", &custom.kv_heads}, {"--head-dim", &custom.head_dim},
      {"--q-len", &custom.q_len},       {"--kv-len", &custom.kv_len}};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--causal" || a == "--cold" || a == "--cache" ||
        a == "--accuracy" || a == "--sinks" || a == "--rope" ||
        a == "--drafts") {
      (a == "--cold"       ? o->cold
       : a == "--cache"    ? o->cache
       : a == "--accuracy" ? o->accuracy
       : a == "--sinks"    ? o->sinks
       : a == "--rope"     ? o->rope
       : a == "--drafts"   ? o->drafts
                           : custom.causal) = true;
      continue;
    }
    int64_t* dim = nullptr;
    for (const auto& d : dims) {
      if (a == d.first) dim = d.second;
    }
    if (!dim && a != "--preset" && a != "--dtype" && a != "--threads" &&
        a != "--reps" && a != "--json" && a != "--block-tokens" &&
        a != "--chunk" && a != "--softcap") {
      *error = (a.empty() || a[0] != '-' ? "unexpected argument '"
                                         : "unknown option '") +
               a + "'";
      return false;
    }
    if (i + 1 >= argc) {
      *error = a + " needs a value";
      return false;
    }
    const std::string v = argv[++i];
    // v as an integer in [1, hi], or false with *error naming a and v.
    auto number = [&](long long hi, long long* n) {
      if (ParseInt(v.c_str(), 1, hi, n)) return true;
      *error = a + ": '" + v + "' is not an integer in [1, " +
               std::to_string(hi) + "]";
      return false;
    };
    long long n = 0;
    if (dim) {
      if (!number(int64_t{1} << 24, &n)) return false;
      *dim = n;
      have_custom = true;
    } else if (a == "--preset") {
      const size_t before = o->shapes.size();
      for (const Shape& p : kPresets) {
        if (p.name == v) o->shapes.push_back(p);
      }
      if (o->shapes.size() == before) {
        *error = "--preset: unknown preset '" + v + "'";
        return false;
      }
    } else if (a == "--dtype") {
      if (v != "f32" && v != "f16") {
        *error = "--dtype: '" + v + "' is not f32 or f16";
        return false;
      }
      o->f16 = v == "f16";
    } else if (a == "--threads" || a == "--reps") {
      if (!number(a == "--threads" ? 1024 : 1000000, &n)) return false;
      (a == "--threads" ? o->threads : o->reps) = static_cast<int>(n);
    } else if (a == "--block-tokens" || a == "--chunk") {
      if (!number(a == "--chunk" ? int64_t{1} << 24 : 4096, &n)) return false;
      (a == "--chunk" ? o->chunk : o->block_tokens) = n;
    } else if (a == "--softcap") {
      char* end = nullptr;
      const double c = strtod(v.c_str(), &end);
      if (end == v.c_str() || *end != '\0' || !(c > 0.0) || c > 1e30) {
        *error = "--softcap: '" + v + "' is not a number > 0";
        return false;
      }
      o->softcap = static_cast<float>(c);
    } else {
      o->json = v;  // --json
    }
  }
  if (custom.q_heads % custom.kv_heads != 0) {
    *error = "--q-heads " + std::to_string(custom.q_heads) +
             " is not a multiple of --kv-heads " +
             std::to_string(custom.kv_heads);
    return false;
  }
  if (have_custom) o->shapes.push_back(custom);
  // --cache/--accuracy/--rope/--drafts alone run only their own cases.
  if (o->shapes.empty() && !o->cache && !o->accuracy && !o->rope && !o->drafts)
    o->shapes.assign(std::begin(kPresets), std::end(kPresets));
  return true;
}

}  // namespace gqa
