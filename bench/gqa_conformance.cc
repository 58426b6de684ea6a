// gqa-conformance DIR...: runs golden cases (shared/golden format) through the
// public C API and checks them; one line per case, then "N passed, M failed".
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
#include "src/reference/closeness.h"

namespace {

constexpr double kF16Tolerance = 1e-2;

constexpr const char kUsage[] =
    "usage: gqa-conformance [--dtype f32|f16] [--threads N] DIR...\n"
    "  DIR: a case folder (with case.json) or a folder of case folders\n"
    "  --dtype    f32 (default) or f16\n"
    "  --threads  1 to 1024 (default 1)\n";

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

const char* PolicyName(gqa_fully_masked_policy p) {
  return p == GQA_FULLY_MASKED_ZERO      ? "zero"
         : p == GQA_FULLY_MASKED_UNIFORM ? "uniform"
                                         : "keras";
}

}  // namespace

int main(int argc, char** argv) {
  gqa_dtype dtype = GQA_DTYPE_F32;
  int threads = 1;
  std::vector<std::string> paths;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      fputs(kUsage, stdout);
      return 0;
    } else if (arg == "--dtype" || arg == "--threads") {
      if (i + 1 >= argc) return UsageError(arg + " needs a value");
      const std::string v = argv[++i];
      long n = 0;
      if (arg == "--threads") {
        if (!ParseInt(v.c_str(), 1, 1024, &n)) {
          return UsageError("--threads: '" + v +
                            "' is not an integer in [1, 1024]");
        }
        threads = static_cast<int>(n);
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

  int passed = 0, failed = 0;
  for (const std::string& path : paths) {
    const std::vector<std::string> dirs = gqa::ListGoldenCaseDirs(path);
    if (dirs.empty()) {
      printf("%s: %s  FAIL\n", path.c_str(), NoCaseReason(path));
      ++failed;
    }
    for (const std::string& dir : dirs) {
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
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
