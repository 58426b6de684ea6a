// Every malformed configuration and call gets its own status and a message,
// and writes nothing to the outputs.
#include <math.h>
#include <string.h>

#include <vector>

#include "doctest/doctest.h"
#include "gqa/gqa.hpp"

namespace {

// A valid small layer and call, for tests that break one thing at a time.
struct Fixture {
  static constexpr int64_t kB = 2, kT = 3, kS = 4, kHq = 4, kHkv = 2, kD = 3,
                           kF = 5;
  std::vector<float> wq = std::vector<float>(kF * kHq * kD, 0.1f);
  std::vector<float> wkv = std::vector<float>(kF * kHkv * kD, 0.1f);
  std::vector<float> wo = std::vector<float>(kHq * kD * kF, 0.1f);
  std::vector<float> bq = std::vector<float>(kHq * kD, 0.0f);
  std::vector<float> bkv = std::vector<float>(kHkv * kD, 0.0f);
  std::vector<float> bo = std::vector<float>(kF, 0.0f);
  std::vector<float> query = std::vector<float>(kB * kT * kF, 0.5f);
  std::vector<float> value = std::vector<float>(kB * kS * kF, 0.5f);
  std::vector<float> output = std::vector<float>(kB * kT * kF, 7.0f);
  std::vector<float> scores = std::vector<float>(kB * kHq * kT * kS, 7.0f);
  std::vector<uint8_t> mask = std::vector<uint8_t>(kB * kHq * kT * kS, 1);
  gqa_layer_config config;
  gqa_layer_weights weights{};
  gqa::Layer layer;
  gqa_forward_args args{};
  gqa::Workspace ws;

  Fixture() {
    gqa_layer_config_init(&config, kD, kHq, kHkv, kF, kF);
    weights.query_kernel = wq.data();
    weights.key_kernel = wkv.data();
    weights.value_kernel = wkv.data();
    weights.output_kernel = wo.data();
    weights.query_bias = bq.data();
    weights.key_bias = bkv.data();
    weights.value_bias = bkv.data();
    weights.output_bias = bo.data();
    REQUIRE(gqa::Layer::Create(config, weights, &layer).ok());
    args.batch = kB;
    args.query_len = kT;
    args.value_len = kS;
    args.query = query.data();
    args.value = value.data();
    args.output = output.data();
    args.scores = scores.data();
    size_t bytes = 0;
    REQUIRE(layer.WorkspaceSize(kB, kT, kS, &bytes).ok());
    ws.Reserve(bytes);
  }

  gqa_status Create(const gqa_layer_config& c) {
    gqa_layer_t h = nullptr;
    const gqa_status s = gqa_layer_create(&c, &weights, &h);
    gqa_layer_destroy(h);
    return s;
  }
  // Runs the call; on failure also checks nothing was written.
  gqa_status Forward(const gqa_forward_args& a) {
    const gqa_status s =
        gqa_layer_forward(layer.handle(), &a, ws.data(), ws.size(), nullptr);
    if (s != GQA_STATUS_OK) {
      for (float x : output) CHECK(x == 7.0f);
      for (float x : scores) CHECK(x == 7.0f);
      CHECK(strlen(gqa_last_error_message()) > 0);
    }
    return s;
  }
};

TEST_CASE("the valid fixture runs") {
  Fixture f;
  CHECK(f.Forward(f.args) == GQA_STATUS_OK);
}

TEST_CASE("configuration errors") {
  Fixture f;
  gqa_layer_config c = f.config;
  c.head_dim = 0;
  CHECK(f.Create(c) == GQA_STATUS_INVALID_SIZE);
  CHECK(strstr(gqa_last_error_message(), "head_dim") != nullptr);
  c = f.config;
  c.num_query_heads = -4;
  CHECK(f.Create(c) == GQA_STATUS_INVALID_SIZE);
  c = f.config;
  c.num_key_value_heads = 0;
  CHECK(f.Create(c) == GQA_STATUS_INVALID_SIZE);
  c = f.config;
  c.query_features = 0;
  CHECK(f.Create(c) == GQA_STATUS_INVALID_SIZE);
  c = f.config;
  c.num_key_value_heads = 3;
  CHECK(f.Create(c) == GQA_STATUS_HEADS_NOT_DIVISIBLE);
  CHECK(strstr(gqa_last_error_message(), "divisible") != nullptr);
  c = f.config;
  c.sliding_window = -1;
  CHECK(f.Create(c) == GQA_STATUS_INVALID_SLIDING_WINDOW);
  for (float rate : {-0.1f, 1.5f, NAN}) {
    c = f.config;
    c.dropout = rate;
    CHECK(f.Create(c) == GQA_STATUS_INVALID_DROPOUT);
  }
  c = f.config;
  c.dtype = 7;
  CHECK(f.Create(c) == GQA_STATUS_INVALID_ENUM);
  c = f.config;
  c.fully_masked_policy = -1;
  CHECK(f.Create(c) == GQA_STATUS_INVALID_ENUM);
  c = f.config;
  c.head_dim = int64_t{1} << 40;
  c.num_query_heads = int64_t{1} << 30;
  c.num_key_value_heads = 1;
  CHECK(f.Create(c) == GQA_STATUS_SIZE_OVERFLOW);
}

TEST_CASE("missing weights and null pointers at creation") {
  Fixture f;
  gqa_layer_t h = nullptr;
  CHECK(gqa_layer_create(nullptr, &f.weights, &h) == GQA_STATUS_NULL_POINTER);
  CHECK(gqa_layer_create(&f.config, nullptr, &h) == GQA_STATUS_NULL_POINTER);
  CHECK(gqa_layer_create(&f.config, &f.weights, nullptr) ==
        GQA_STATUS_NULL_POINTER);
  gqa_layer_weights w = f.weights;
  w.value_kernel = nullptr;
  CHECK(gqa_layer_create(&f.config, &w, &h) == GQA_STATUS_MISSING_WEIGHT);
  CHECK(strstr(gqa_last_error_message(), "value_kernel") != nullptr);
  w = f.weights;
  w.output_bias = nullptr;
  CHECK(gqa_layer_create(&f.config, &w, &h) == GQA_STATUS_MISSING_WEIGHT);
  gqa_layer_config c = f.config;
  c.use_bias = 0;  // biases not needed then
  CHECK(gqa_layer_create(&c, &w, &h) == GQA_STATUS_OK);
  gqa_layer_destroy(h);
  c = f.config;
  c.use_gate = 1;  // gate kernel required
  h = nullptr;
  CHECK(gqa_layer_create(&c, &f.weights, &h) == GQA_STATUS_MISSING_WEIGHT);
  CHECK(h == nullptr);
}

TEST_CASE("call errors: sizes, pointers, shapes") {
  Fixture f;
  gqa_forward_args a = f.args;
  for (int64_t* field : {&a.batch, &a.query_len, &a.value_len}) {
    for (int64_t bad : {int64_t{0}, int64_t{-3}}) {
      a = f.args;
      *field = bad;
      CHECK(f.Forward(a) == GQA_STATUS_INVALID_SIZE);
    }
  }
  a = f.args;
  a.query = nullptr;
  CHECK(f.Forward(a) == GQA_STATUS_NULL_POINTER);
  a = f.args;
  a.value = nullptr;
  CHECK(f.Forward(a) == GQA_STATUS_NULL_POINTER);
  a = f.args;
  a.output = nullptr;
  CHECK(f.Forward(a) == GQA_STATUS_NULL_POINTER);
  CHECK(gqa_layer_forward(nullptr, &f.args, f.ws.data(), f.ws.size(),
                          nullptr) == GQA_STATUS_NULL_POINTER);
  CHECK(gqa_layer_forward(f.layer.handle(), nullptr, f.ws.data(), f.ws.size(),
                          nullptr) == GQA_STATUS_NULL_POINTER);
  a = f.args;
  a.batch = int64_t{1} << 40;
  a.query_len = int64_t{1} << 30;
  CHECK(f.Forward(a) == GQA_STATUS_SIZE_OVERFLOW);
  size_t bytes = 0;
  CHECK(gqa_layer_workspace_size(f.layer.handle(), int64_t{1} << 40,
                                 int64_t{1} << 40, 1, 1,
                                 &bytes) == GQA_STATUS_SIZE_OVERFLOW);
  CHECK(gqa_layer_workspace_size(f.layer.handle(), 0, 1, 1, 1, &bytes) ==
        GQA_STATUS_INVALID_SIZE);
  CHECK(gqa_layer_workspace_size(f.layer.handle(), 1, 1, 1, 0, &bytes) ==
        GQA_STATUS_INVALID_SIZE);
  CHECK(gqa_layer_workspace_size(f.layer.handle(), 1, 1, 1, 1, nullptr) ==
        GQA_STATUS_NULL_POINTER);
  CHECK(gqa_layer_workspace_size(nullptr, 1, 1, 1, 1, &bytes) ==
        GQA_STATUS_NULL_POINTER);

  // Key omitted but the key kernel expects another width than value's.
  gqa_layer_config c = f.config;
  c.key_features = 2;
  std::vector<float> wk(2 * Fixture::kHkv * Fixture::kD, 0.1f);
  gqa_layer_weights w = f.weights;
  w.key_kernel = wk.data();
  gqa::Layer narrow_key;
  REQUIRE(gqa::Layer::Create(c, w, &narrow_key).ok());
  const gqa_status s = gqa_layer_forward(narrow_key.handle(), &f.args,
                                         f.ws.data(), f.ws.size(), nullptr);
  CHECK(s == GQA_STATUS_SHAPE_MISMATCH);
  for (float x : f.output) CHECK(x == 7.0f);
}

TEST_CASE("call errors: workspace") {
  Fixture f;
  CHECK(gqa_layer_forward(f.layer.handle(), &f.args, nullptr, f.ws.size(),
                          nullptr) == GQA_STATUS_NULL_POINTER);
  CHECK(gqa_layer_forward(f.layer.handle(), &f.args, f.ws.data(), 16,
                          nullptr) == GQA_STATUS_WORKSPACE_TOO_SMALL);
  CHECK(gqa_layer_forward(f.layer.handle(), &f.args,
                          static_cast<char*>(f.ws.data()) + 4, f.ws.size() - 64,
                          nullptr) == GQA_STATUS_WORKSPACE_MISALIGNED);
  for (float x : f.output) CHECK(x == 7.0f);
}

TEST_CASE("call errors: masks") {
  Fixture f;
  gqa_forward_args a = f.args;
  a.attention_mask = f.mask.data();
  for (int32_t rank : {0, 1, 5}) {
    a.attention_mask_rank = rank;
    CHECK(f.Forward(a) == GQA_STATUS_INVALID_MASK_RANK);
  }
  struct Bad {
    int32_t rank;
    int64_t dims[4];
    gqa_status want;
  };
  const Bad bad[] = {
      {2, {Fixture::kT, 3}, GQA_STATUS_MASK_NOT_BROADCASTABLE},
      {2, {2, Fixture::kS}, GQA_STATUS_MASK_NOT_BROADCASTABLE},
      {3, {3, Fixture::kT, Fixture::kS}, GQA_STATUS_MASK_NOT_BROADCASTABLE},
      // Head axis must be 1 or Hq, not Hkv.
      {4,
       {Fixture::kB, Fixture::kHkv, Fixture::kT, Fixture::kS},
       GQA_STATUS_MASK_NOT_BROADCASTABLE},
      {4, {Fixture::kB, Fixture::kHq, 0, Fixture::kS}, GQA_STATUS_INVALID_SIZE},
      {3, {Fixture::kB, -1, Fixture::kS}, GQA_STATUS_INVALID_SIZE},
  };
  for (const Bad& b : bad) {
    a.attention_mask_rank = b.rank;
    memcpy(a.attention_mask_dims, b.dims, sizeof(b.dims));
    CHECK(f.Forward(a) == b.want);
  }
  // Every broadcast form that is valid runs.
  const Bad good[] = {
      {2, {1, 1}, GQA_STATUS_OK},
      {2, {Fixture::kT, Fixture::kS}, GQA_STATUS_OK},
      {3, {1, Fixture::kT, 1}, GQA_STATUS_OK},
      {4, {Fixture::kB, Fixture::kHq, Fixture::kT, Fixture::kS}, GQA_STATUS_OK},
      {4, {1, Fixture::kHq, 1, Fixture::kS}, GQA_STATUS_OK},
  };
  for (const Bad& g : good) {
    a.attention_mask_rank = g.rank;
    memcpy(a.attention_mask_dims, g.dims, sizeof(g.dims));
    CHECK(f.Forward(a) == GQA_STATUS_OK);
  }
}

TEST_CASE("status names and the C++ Status carry the message") {
  CHECK(strcmp(gqa_status_name(GQA_STATUS_MASK_NOT_BROADCASTABLE),
               "GQA_STATUS_MASK_NOT_BROADCASTABLE") == 0);
  CHECK(strcmp(gqa_status_name(static_cast<gqa_status>(999)),
               "GQA_STATUS_UNKNOWN") == 0);
  Fixture f;
  gqa_forward_args a = f.args;
  a.batch = 0;
  const gqa::Status s = f.layer.Forward(a, f.ws);
  CHECK(s.code() == GQA_STATUS_INVALID_SIZE);
  CHECK(s.message().find("batch") != std::string::npos);
}

}  // namespace
