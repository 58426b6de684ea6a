// Golden cases in the format of shared/golden (case.json + raw f32 arrays):
// loading and running through the public C API in f32 or f16 (compare
// with src/reference/closeness.h).
#ifndef GQA_BENCH_GOLDEN_CASE_H_
#define GQA_BENCH_GOLDEN_CASE_H_

#include <stdint.h>

#include <map>
#include <string>
#include <vector>

#include "gqa/gqa.h"

namespace gqa {

struct GoldenArray {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

struct GoldenCase {
  std::string name;
  std::string dir;
  gqa_layer_config config{};  // dtype f32; policy keras
  int64_t batch = 0, q_len = 0, kv_len = 0;
  bool training = false, causal = false, want_scores = false;
  double rtol = 1e-4, atol = 1e-4;
  std::map<std::string, GoldenArray> arrays;  // by case.json key
  // policy name ("zero"/"uniform") -> {"output"/"scores" -> array key}
  std::map<std::string, std::map<std::string, std::string>> alternates;

  const GoldenArray* Find(const std::string& key) const {
    auto it = arrays.find(key);
    return it == arrays.end() ? nullptr : &it->second;
  }
};

// Reads dir/case.json and its arrays. False with *error on failure: a number
// in case.json that is not a positive integer (or is too large), a .bin whose
// size is not its shape's (named with both byte counts), or an array whose
// shape disagrees with B, T, S and the layer config. A case that loads can
// be run without any read past an array.
bool LoadGoldenCase(const std::string& dir, GoldenCase* out,
                    std::string* error);

// Case folders under `path`: itself if it holds case.json, else its
// sub-folders that do (sorted).
std::vector<std::string> ListGoldenCaseDirs(const std::string& path);

struct GoldenRun {
  gqa_status status = GQA_STATUS_OK;
  std::string message;
  std::vector<float> output;  // [B,T,Fq] as float (f16 results widened)
  std::vector<float> scores;  // [B,Hq,T,S] when the case asks for scores
};

// Runs the case through gqa_layer_create/forward. For f16 the inputs and
// weights are rounded to binary16 first.
GoldenRun RunGoldenCase(const GoldenCase& c, gqa_dtype dtype,
                        gqa_fully_masked_policy policy, int threads);

}  // namespace gqa

#endif  // GQA_BENCH_GOLDEN_CASE_H_
