// gqa-conformance DIR...: runs golden cases through the public C API and checks
// them; one line per case, then "N passed, M failed, K skipped".
//
// Two formats, told apart per case by case.json: the Keras layer cases of
// shared/golden (no "kind"; run through gqa_layer_*, line "NAME max_abs_err
// E  pass|FAIL") and the LLM cases of shared/golden-llm (spec
// shared/spec/llm-attention-semantics.md section 6, a "kind"; line
// "PASS|FAIL|SKIP NAME: DETAIL"). Of the LLM kinds, `kv` runs through the KV
// cache v2 API (include/gqa/block_cache.h) with --block-tokens tokens per
// block, `attention` through the attention core (include/gqa/attention.h) and
// `rope` through the RoPE helper (include/gqa/rope.h, f32, out of place and
// in place); a kv case that needs what the API lacks (truncate/keep, a tree
// mask) is skipped. --dtype applies to the Keras cases only (an LLM case
// names its own dtypes).
//
// f16 (--dtype f16): inputs and weights are rounded to binary16 (relative
// error up to 2^-11 each), products are accumulated in f32 and the output is
// rounded to binary16 again (2^-11 relative, spacing 2^-10 in [1,2)). The
// rounding of the inputs and weights moves every projection by up to
// ~2^-10 * sum|x*w|, and softmax and the output projection carry that on;
// on the shipped cases (|values| <= ~3) the observed worst error is below
// 4e-3. The f16 tolerance is therefore atol = rtol = 1e-2: ten f16 ulps at
// 1.0, loose enough for that rounding, tight enough to catch any real error
// (a wrong mask, head or scale moves outputs by ~1e-1 or more).
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <string>
#include <vector>

#include "bench/golden_case.h"
#include "bench/golden_llm.h"
#include "src/reference/closeness.h"

namespace {

constexpr double kF16Tolerance = 1e-2;

constexpr const char kUsage[] =
    "usage: gqa-conformance [--dtype f32|f16] [--threads N] [--block-tokens N]"
    " DIR...\n"
    "  DIR: a case folder (with case.json) or a folder of case folders, of\n"
    "       shared/golden (Keras layer) or shared/golden-llm (LLM) format\n"
    "  --dtype         f32 (default) or f16: the Keras layer cases' dtype\n"
    "  --threads       1 to 1024 (default 1)\n"
    "  --block-tokens  1 to 4096 (default 16): token slots per cache block\n"
    "                  for the LLM kv cases\n"
    "Prints one line per case and \"N passed, M failed, K skipped\"; exits 0\n"
    "when none failed, 1 otherwise, 2 on a usage error.\n";

// Prints "gqa-conformance: MESSAGE" and the usage to stderr; returns 2.
int UsageError(const std::string& message) {
  fprintf(stderr, "gqa-conformance: %s\n%s", message.c_str(), kUsage);
  return 2;
}

// The whole of s as a base-10 integer in [lo, hi].
bool ParseInt(const char* s, long lo, long hi, long* out) {
  if (!isdigit(static_cast<unsigned char>(*s)) && *s != '-') return false;
  char* end = nullptr;
  errno = 0;
  const long v = strtol(s, &end, 10);
  if (errno != 0 || *end != '\0' || v < lo || v > hi) return false;
  *out = v;
  return true;
}

// Why `path` holds no case: missing, not a folder, or no case.json in it.
const char* NoCaseReason(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return "no such directory";
  return S_ISDIR(st.st_mode) ? "no case found" : "not a directory";
}

// Runs one case of the LLM format and prints its line; returns its outcome.
gqa::LlmOutcome RunLlmCase(const std::string& dir, int64_t block_tokens,
                           int threads) {
  gqa::LlmCase c;
  std::string error;
  if (!gqa::LoadLlmCase(dir, &c, &error)) {
    printf("FAIL %s: load error: %s\n", dir.c_str(), error.c_str());
    return gqa::LlmOutcome::kFailed;
  }
  const gqa::LlmResult r =
      c.kind == "kv"     ? gqa::RunKvCase(c, block_tokens, threads)
      : c.kind == "rope" ? gqa::RunRopeCase(c)
                         : gqa::RunAttentionCase(c, threads);
  const char* tag = r.outcome == gqa::LlmOutcome::kPassed   ? "PASS"
                    : r.outcome == gqa::LlmOutcome::kFailed ? "FAIL"
                                                            : "SKIP";
  std::string detail = r.message;
  if (r.outcome == gqa::LlmOutcome::kSkipped &&
      detail.rfind("skipped: ", 0) == 0) {
    detail = detail.substr(9);
  }
  printf("%s %s: %s\n", tag, c.name.c_str(), detail.c_str());
  return r.outcome;
}

const char* PolicyName(gqa_fully_masked_policy p) {
  return p == GQA_FULLY_MASKED_ZERO      ? "zero"
         : p == GQA_FULLY_MASKED_UNIFORM ? "uniform"
                                         : "keras";
}

}  // namespace

int main(int argc, char** argv) {
  gqa_dtype dtype = GQA_DTYPE_F32;
  int threads = 1;
  int64_t block_tokens = 16;
  std::vector<std::string> paths;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      fputs(kUsage, stdout);
      return 0;
    } else if (arg == "--dtype" || arg == "--threads" ||
               arg == "--block-tokens") {
      if (i + 1 >= argc) return UsageError(arg + " needs a value");
      const std::string v = argv[++i];
      long n = 0;
      if (arg == "--threads") {
        if (!ParseInt(v.c_str(), 1, 1024, &n)) {
          return UsageError("--threads: '" + v +
                            "' is not an integer in [1, 1024]");
        }
        threads = static_cast<int>(n);
      } else if (arg == "--block-tokens") {
        if (!ParseInt(v.c_str(), 1, 4096, &n)) {
          return UsageError("--block-tokens: '" + v +
                            "' is not an integer in [1, 4096]");
        }
        block_tokens = n;
      } else if (v == "f32" || v == "f16") {
        dtype = v == "f32" ? GQA_DTYPE_F32 : GQA_DTYPE_F16;
      } else {
        return UsageError("--dtype: '" + v + "' is not f32 or f16");
      }
    } else if (arg == "--") {
      for (++i; i < argc; ++i) paths.push_back(argv[i]);
    } else if (!arg.empty() && arg[0] == '-') {
      return UsageError("unknown option '" + arg + "'");
    } else {
      paths.push_back(arg);
    }
  }
  if (paths.empty()) return UsageError("no DIR given");

  int passed = 0, failed = 0, skipped = 0;
  for (const std::string& path : paths) {
    const std::vector<std::string> dirs = gqa::ListGoldenCaseDirs(path);
    if (dirs.empty()) {
      printf("%s: %s  FAIL\n", path.c_str(), NoCaseReason(path));
      ++failed;
    }
    for (const std::string& dir : dirs) {
      if (!gqa::LlmCaseKind(dir).empty()) {
        const gqa::LlmOutcome o = RunLlmCase(dir, block_tokens, threads);
        if (o == gqa::LlmOutcome::kPassed) {
          ++passed;
        } else if (o == gqa::LlmOutcome::kFailed) {
          ++failed;
        } else {
          ++skipped;
        }
        continue;
      }
      gqa::GoldenCase c;
      std::string error;
      if (!gqa::LoadGoldenCase(dir, &c, &error)) {
        printf("%-40s load error: %s  FAIL\n", dir.c_str(), error.c_str());
        ++failed;
        continue;
      }
      const double rtol = dtype == GQA_DTYPE_F16 ? kF16Tolerance : c.rtol;
      const double atol = dtype == GQA_DTYPE_F16 ? kF16Tolerance : c.atol;
      // The keras policy against output.bin, then each alternate policy.
      struct Check {
        gqa_fully_masked_policy policy;
        std::string output_key, scores_key;
      };
      std::vector<Check> checks = {
          {GQA_FULLY_MASKED_KERAS, "output", "scores"}};
      for (const auto& alt : c.alternates) {
        const gqa_fully_masked_policy p = alt.first == "zero"
                                              ? GQA_FULLY_MASKED_ZERO
                                              : GQA_FULLY_MASKED_UNIFORM;
        auto out = alt.second.find("output");
        auto sc = alt.second.find("scores");
        checks.push_back({p, out == alt.second.end() ? "" : out->second,
                          sc == alt.second.end() ? "" : sc->second});
      }
      bool ok = true;
      double worst = 0.0;
      std::string note;
      for (const Check& ch : checks) {
        const gqa::GoldenRun run =
            gqa::RunGoldenCase(c, dtype, ch.policy, threads);
        if (run.status != GQA_STATUS_OK) {
          ok = false;
          note = std::string(" (") + PolicyName(ch.policy) + ": " +
                 run.message + ")";
          break;
        }
        const gqa::GoldenArray* want = c.Find(ch.output_key);
        if (want) {
          const gqa::reference::Closeness cmp =
              gqa::reference::Compare(run.output, want->data, rtol, atol);
          ok = ok && cmp.pass();
          if (!(cmp.max_abs_err <= worst)) worst = cmp.max_abs_err;
        }
        const gqa::GoldenArray* want_scores =
            c.want_scores ? c.Find(ch.scores_key) : nullptr;
        if (want_scores) {
          const gqa::reference::Closeness cmp = gqa::reference::Compare(
              run.scores, want_scores->data, rtol, atol);
          ok = ok && cmp.pass();
          if (!(cmp.max_abs_err <= worst)) worst = cmp.max_abs_err;
        }
      }
      printf("%-40s max_abs_err %.3e  %s%s\n", c.name.c_str(), worst,
             ok ? "pass" : "FAIL", note.c_str());
      ok ? ++passed : ++failed;
    }
  }
  printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
  return failed == 0 ? 0 : 1;
}
