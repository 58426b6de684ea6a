// The attention cases of the LLM golden set (shared/golden-llm, spec
// section 6) through the attention core, its rope cases through gqa_rope,
// and its kv cases
// through the KV cache v2 API (include/gqa/block_cache.h): every supported
// case passes with blocks of 16 and of 3 tokens, 1 and 2 threads, and every
// Highway target; the unsupported ones are skipped (and listed), never
// passed. Also: every case of the set (all three kinds) loads, a corrupted
// or inconsistent case is a load error, and the runner fails a case whose
// expectations are perturbed.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "bench/golden_case.h"
#include "bench/golden_llm.h"
#include "doctest/doctest.h"
#include "tests/layer_case.h"

namespace gqa {
namespace test {
namespace {

std::vector<LlmCase> LoadKind(const std::string& kind) {
  std::vector<LlmCase> cases;
  for (const std::string& dir : ListGoldenCaseDirs(GQA_GOLDEN_LLM_DIR)) {
    LlmCase c;
    std::string error;
    const bool ok = LoadLlmCase(dir, &c, &error);
    INFO(error);
    REQUIRE(ok);
    if (kind.empty() || c.kind == kind) cases.push_back(std::move(c));
  }
  return cases;
}

// Every kv case of the public set runs (tree, truncate and keep included).
constexpr size_t kPublicKvCases = 20;

TEST_CASE("golden-llm: every case of the set loads; kinds are known") {
  const std::vector<LlmCase> all = LoadKind("");
  REQUIRE(!all.empty());
  for (const LlmCase& c : all) {
    INFO(c.name);
    CHECK(LlmCaseKind(c.dir) == c.kind);
    CHECK((c.kind == "attention" || c.kind == "kv" || c.kind == "rope"));
  }
  CHECK(LlmCaseKind(GQA_GOLDEN_DIR "/01_mha_self_basic").empty());
}

TEST_CASE("golden-llm: kv cases through the block cache") {
  const std::vector<LlmCase> cases = LoadKind("kv");
  REQUIRE(!cases.empty());
  std::set<std::string> supported;
  for (const LlmCase& c : cases) {
    const std::string why = LlmKvUnsupportedReason(c);
    if (why.empty()) {
      supported.insert(c.name);
    } else {
      MESSAGE("SKIP " << c.name << ": " << why);
    }
  }
  if (cases.size() == kPublicKvCases) CHECK(supported.size() == kPublicKvCases);
  ForEachTarget([&](int64_t) {
    for (int64_t block_tokens : {16, 3}) {
      // Attend outputs per case with 1 thread, to compare with 2 threads.
      std::map<std::string, std::vector<std::vector<float>>> one_thread;
      for (int threads : {1, 2}) {
        CAPTURE(block_tokens);
        CAPTURE(threads);
        size_t passed = 0, failed = 0, skipped = 0;
        for (const LlmCase& c : cases) {
          std::vector<std::vector<float>> outs;
          const LlmResult r = RunKvCase(c, block_tokens, threads, &outs);
          INFO(c.name << ": " << r.message);
          CHECK(r.outcome != LlmOutcome::kFailed);
          if (r.outcome == LlmOutcome::kPassed) {
            CHECK(supported.count(c.name) == 1);
            ++passed;
            if (threads == 1) {
              one_thread[c.name] = outs;
            } else {  // bitwise identical for any thread count
              const auto& ref = one_thread[c.name];
              REQUIRE(outs.size() == ref.size());
              for (size_t i = 0; i < outs.size(); ++i) {
                REQUIRE(outs[i].size() == ref[i].size());
                CHECK(memcmp(outs[i].data(), ref[i].data(),
                             outs[i].size() * sizeof(float)) == 0);
              }
            }
          } else if (r.outcome == LlmOutcome::kFailed) {
            ++failed;
          } else {
            CHECK(r.message.rfind("skipped: ", 0) == 0);
            ++skipped;
          }
        }
        REQUIRE(failed == 0);
        REQUIRE(passed == supported.size());
        REQUIRE(skipped == cases.size() - supported.size());
      }
    }
  });
}

TEST_CASE("golden-llm: attention cases through the attention core") {
  const std::vector<LlmCase> cases = LoadKind("attention");
  REQUIRE(!cases.empty());
  ForEachTarget([&](int64_t) {
    std::map<std::string, std::vector<float>> one_thread;
    for (int threads : {1, 3}) {
      CAPTURE(threads);
      size_t passed = 0;
      for (const LlmCase& c : cases) {
        std::vector<float> out;
        const LlmResult r = RunAttentionCase(c, threads, &out);
        INFO(c.name << ": " << r.message);
        CHECK(r.outcome != LlmOutcome::kFailed);
        CHECK(r.outcome == LlmOutcome::kPassed);
        if (r.outcome != LlmOutcome::kPassed) continue;
        ++passed;
        if (threads == 1) {
          one_thread[c.name] = out;
        } else {  // bitwise identical for any thread count
          const std::vector<float>& ref = one_thread[c.name];
          REQUIRE(out.size() == ref.size());
          CHECK(memcmp(out.data(), ref.data(), out.size() * 4) == 0);
        }
      }
      CHECK(passed == cases.size());
    }
  });
}

TEST_CASE("golden-llm: the attention runner fails wrong expectations") {
  LlmCase c;
  std::string error;
  REQUIRE(LoadLlmCase(GQA_GOLDEN_LLM_DIR
                      "/13_attn_sinks_softcap_window_causal_offsets",
                      &c, &error));
  REQUIRE(RunAttentionCase(c, 1).outcome == LlmOutcome::kPassed);
  LlmCase wrong = c;
  wrong.files["out"].f32[7] += 1e-3f;  // above atol + rtol * |want|
  CHECK(RunAttentionCase(wrong, 1).outcome == LlmOutcome::kFailed);
  wrong = c;
  wrong.numeric_options["softcap"] = 0.0;  // the option matters
  CHECK(RunAttentionCase(wrong, 1).outcome == LlmOutcome::kFailed);
  wrong = c;
  wrong.files.erase("sinks");
  CHECK(RunAttentionCase(wrong, 1).outcome == LlmOutcome::kFailed);
}

TEST_CASE("golden-llm: rope cases through gqa_rope") {
  const std::vector<LlmCase> cases = LoadKind("rope");
  CHECK(cases.size() == 10);
  for (const LlmCase& c : cases) {
    const LlmResult r = RunRopeCase(c);
    INFO(c.name << ": " << r.message);
    CHECK(r.outcome == LlmOutcome::kPassed);
    CHECK(r.max_abs_err < 1e-5);  // f64 angles: ~4e-7 in the set's notes
  }
}

TEST_CASE("golden-llm: the rope runner fails wrong expectations") {
  LlmCase c;
  std::string error;
  REQUIRE(LoadLlmCase(GQA_GOLDEN_LLM_DIR
                      "/58_rope_rmsnorm_interleaved_partial_linear",
                      &c, &error));
  REQUIRE(RunRopeCase(c).outcome == LlmOutcome::kPassed);
  LlmCase wrong = c;
  wrong.files["y"].f32[9] += 1e-3f;  // above atol + rtol * |want|
  CHECK(RunRopeCase(wrong).outcome == LlmOutcome::kFailed);
  wrong = c;
  wrong.string_options["style"] = "half";  // the options matter
  CHECK(RunRopeCase(wrong).outcome == LlmOutcome::kFailed);
  wrong = c;
  wrong.numeric_options["factor"] = 1.0;
  CHECK(RunRopeCase(wrong).outcome == LlmOutcome::kFailed);
  wrong = c;
  wrong.files.erase("norm_weight");
  CHECK(RunRopeCase(wrong).outcome == LlmOutcome::kFailed);
  wrong = c;
  wrong.numeric_options["rope_alpha"] = 2.0;  // an option it cannot honour
  CHECK(RunRopeCase(wrong).outcome == LlmOutcome::kFailed);
  wrong = c;
  wrong.string_options["scaling"] = "yarn";
  CHECK(RunRopeCase(wrong).outcome == LlmOutcome::kFailed);
}

// A supported kv case with each kind of expectation perturbed must fail.
TEST_CASE("golden-llm: the runner fails wrong expectations") {
  LlmCase base;
  std::string error;
  REQUIRE(LoadLlmCase(GQA_GOLDEN_LLM_DIR "/33_kv_q8_chunks", &base, &error));
  REQUIRE(RunKvCase(base, 16, 1).outcome == LlmOutcome::kPassed);
  auto first = [&](LlmCase& c, const char* op) -> LlmKvStep& {
    for (LlmKvStep& s : c.steps) {
      if (s.op == op && !s.expect_error) return s;
    }
    FAIL("no step " << op);
    return c.steps[0];
  };
  {
    LlmCase c = base;  // an attend output off by more than the tolerance
    LlmKvStep& s = first(c, "attend");
    s.files["out"].f32[5] += 0.05f;
    const LlmResult r = RunKvCase(c, 16, 1);
    INFO(r.message);
    CHECK(r.outcome == LlmOutcome::kFailed);
  }
  {
    LlmCase c = base;  // a read-back row off by one bit
    LlmKvStep& s = first(c, "read");
    uint32_t bits;
    memcpy(&bits, &s.files["v_row"].f32[3], 4);
    bits ^= 1u;
    memcpy(&s.files["v_row"].f32[3], &bits, 4);
    const LlmResult r = RunKvCase(c, 3, 1);
    INFO(r.message);
    CHECK(r.outcome == LlmOutcome::kFailed);
  }
  {
    LlmCase c = base;  // wrong lengths_after
    first(c, "append").lengths_after[0] += 1;
    const LlmResult r = RunKvCase(c, 16, 2);
    INFO(r.message);
    CHECK(r.outcome == LlmOutcome::kFailed);
  }
  {
    LlmCase c = base;  // a valid call marked as an error must fail the case
    first(c, "attend").expect_error = true;
    const LlmResult r = RunKvCase(c, 16, 1);
    INFO(r.message);
    CHECK(r.outcome == LlmOutcome::kFailed);
  }
  {
    LlmCase c;  // a cache the API creates, marked as refused
    REQUIRE(LoadLlmCase(GQA_GOLDEN_LLM_DIR "/47_kv_create_error_q4_d48", &c,
                        &error));
    c.cache.D = c.cache.Dv = 64;
    CHECK(RunKvCase(c, 16, 1).outcome == LlmOutcome::kFailed);
  }
}

// Copies a case folder to a fresh temporary one.
std::string CopyCase(const std::string& name) {
  char tmpl[] = "/tmp/gqa_golden_llm_XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  const std::string dst = tmpl;
  const std::string cmd =
      "cp -r '" GQA_GOLDEN_LLM_DIR "/" + name + "/.' '" + dst + "'";
  REQUIRE(system(cmd.c_str()) == 0);
  return dst;
}

void RemoveDir(const std::string& dir) {
  const std::string cmd = "rm -rf '" + dir + "'";
  CHECK(system(cmd.c_str()) == 0);
}

std::string ReadText(const std::string& path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::trunc);
  f << text;
}

void ReplaceOnce(const std::string& path, const std::string& from,
                 const std::string& to) {
  std::string s = ReadText(path);
  const size_t at = s.find(from);
  REQUIRE(at != std::string::npos);
  s.replace(at, from.size(), to);
  WriteText(path, s);
}

std::string LoadError(const std::string& dir) {
  LlmCase c;
  std::string error;
  if (LoadLlmCase(dir, &c, &error)) return "";
  return error.empty() ? "(no message)" : error;
}

TEST_CASE("golden-llm: corrupted or inconsistent cases are load errors") {
  const std::string name = "29_kv_f32_linear_ragged";
  {
    const std::string dir = CopyCase(name);  // a truncated .bin
    REQUIRE(truncate((dir + "/s01_q.bin").c_str(), 100) == 0);
    const std::string e = LoadError(dir);
    INFO(e);
    CHECK(e.find("s01_q.bin") != std::string::npos);
    CHECK(e.find("needs 3072 bytes, the file has 100") != std::string::npos);
    RemoveDir(dir);
  }
  {
    const std::string dir = CopyCase(name);  // a .bin one byte too long
    std::ofstream(dir + "/s00_counts.bin", std::ios::app) << 'x';
    const std::string e = LoadError(dir);
    INFO(e);
    CHECK(e.find("needs 24 bytes, the file has 25") != std::string::npos);
    RemoveDir(dir);
  }
  {
    const std::string dir = CopyCase(name);  // a missing .bin
    REQUIRE(unlink((dir + "/s02_k_row.bin").c_str()) == 0);
    CHECK(LoadError(dir).find("cannot open") != std::string::npos);
    RemoveDir(dir);
  }
  {
    const std::string dir = CopyCase(name);  // a shape that disagrees
    ReplaceOnce(dir + "/case.json",
                "\"q\": {\"file\": \"s01_q.bin\", \"shape\": [3, 2, 4, 32]",
                "\"q\": {\"file\": \"s01_q.bin\", \"shape\": [3, 4, 2, 32]");
    const std::string e = LoadError(dir);
    INFO(e);
    CHECK(e.find("the case implies [3, 2, 4, 32]") != std::string::npos);
    RemoveDir(dir);
  }
  {
    const std::string dir = CopyCase(name);  // an unknown op, kind, dtype
    ReplaceOnce(dir + "/case.json", "\"op\": \"read\"", "\"op\": \"peek\"");
    CHECK(LoadError(dir).find("unknown value \"peek\"") != std::string::npos);
    ReplaceOnce(dir + "/case.json", "\"kind\": \"kv\"", "\"kind\": \"kvx\"");
    CHECK(!LoadError(dir).empty());
    RemoveDir(dir);
  }
  {
    const std::string dir = CopyCase(name);
    ReplaceOnce(dir + "/case.json", "\"dtype\": \"int64\"",
                "\"dtype\": \"int32\"");
    CHECK(!LoadError(dir).empty());
    RemoveDir(dir);
  }
  {
    const std::string dir = CopyCase(name);  // not JSON
    WriteText(dir + "/case.json", "{\"kind\": \"kv\", ");
    CHECK(!LoadError(dir).empty());
    CHECK(LlmCaseKind(dir).empty());
    RemoveDir(dir);
  }
  {
    const std::string dir = CopyCase("01_attn_basic_mha");  // attention
    REQUIRE(truncate((dir + "/out.bin").c_str(), 0) == 0);
    CHECK(LoadError(dir).find("out.bin") != std::string::npos);
    RemoveDir(dir);
  }
}

}  // namespace
}  // namespace test
}  // namespace gqa
