// gqa_rope's refusals (include/gqa/rope.h): every bad size, enum,
// parameter, pointer, position and overlap returns its status and a
// message, and writes nothing (y is filled with a sentinel and checked
// untouched). Parameters a call does not use are not read.
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <functional>
#include <vector>

#include "doctest/doctest.h"
#include "gqa/rope.h"

namespace gqa {
namespace test {
namespace {

constexpr int64_t B = 2, T = 3, H = 2, D = 16;
constexpr size_t kElems = B * T * H * D;
constexpr unsigned char kSentinel = 0xA5;

// Buffers of one call: x f32, y (bytes, sentinel-filled, room for f32),
// positions, norm weight; the call is gqa_rope over them after `edit`.
struct Call {
  std::vector<float> x = std::vector<float>(kElems, 0.25f);
  std::vector<unsigned char> y =
      std::vector<unsigned char>(kElems * 4 + 64, kSentinel);
  std::vector<int64_t> positions = {0, 1, 2, 3, 4, 5};
  std::vector<float> weight = std::vector<float>(D, 1.0f);
  gqa_rope_params p;
  int64_t b = B, t = T, h = H, d = D;
  const int64_t* pos = nullptr;
  const void* in = nullptr;
  void* out = nullptr;
  int32_t x_dtype = GQA_DTYPE_F32, y_dtype = GQA_DTYPE_F32;
  const gqa_rope_params* params = &p;

  Call() {
    gqa_rope_params_init(&p);
    p.norm_weight = weight.data();
    pos = positions.data(), in = x.data(), out = y.data();
  }
  gqa_status Run() {
    return gqa_rope(params, b, t, h, d, pos, in, x_dtype, out, y_dtype);
  }
};

// Runs the edited call; it must fail with `want`, say why (the message
// holding `part`), and write nothing: y (sentinel-filled), x and the
// positions are as the edit left them.
void ExpectRefused(const char* what, gqa_status want,
                   const std::function<void(Call*)>& edit,
                   const char* part = "") {
  CAPTURE(what);
  Call c;
  REQUIRE(c.Run() == GQA_STATUS_OK);  // the unedited call works
  c.y.assign(c.y.size(), kSentinel);
  edit(&c);
  const std::vector<unsigned char> y_before = c.y;
  const std::vector<float> x_before = c.x;
  const std::vector<int64_t> pos_before = c.positions;
  const gqa_status got = c.Run();
  const char* message = gqa_last_error_message();
  INFO(message);
  CHECK(got == want);
  CHECK(strlen(message) > 0);
  CHECK(strstr(message, part) != nullptr);
  CHECK(c.y == y_before);
  CHECK(c.x == x_before);
  CHECK(c.positions == pos_before);
}

TEST_CASE("rope refuses bad sizes, enums and pointers, writing nothing") {
  const gqa_status kNull = GQA_STATUS_NULL_POINTER;
  ExpectRefused("params NULL", kNull, [](Call* c) { c->params = nullptr; });
  ExpectRefused("positions NULL", kNull, [](Call* c) { c->pos = nullptr; });
  ExpectRefused("x NULL", kNull, [](Call* c) { c->in = nullptr; });
  ExpectRefused("y NULL", kNull, [](Call* c) { c->out = nullptr; });
  for (int64_t bad : {int64_t{0}, int64_t{-1}, INT64_MIN}) {
    CAPTURE(bad);
    const gqa_status kSize = GQA_STATUS_INVALID_SIZE;
    ExpectRefused("batch", kSize, [=](Call* c) { c->b = bad; });
    ExpectRefused("tokens", kSize, [=](Call* c) { c->t = bad; });
    ExpectRefused("heads", kSize, [=](Call* c) { c->h = bad; });
    ExpectRefused("head_dim", kSize, [=](Call* c) { c->d = bad; });
  }
  const gqa_status kBig = GQA_STATUS_SIZE_OVERFLOW;
  ExpectRefused("head_dim 4097", kBig, [](Call* c) { c->d = 4097; });
  ExpectRefused("2^48 + elements", kBig, [](Call* c) {
    c->b = int64_t{1} << 20, c->t = int64_t{1} << 20, c->h = 1 << 10;
  });
  ExpectRefused("int64 overflow", kBig,
                [](Call* c) { c->b = INT64_MAX / 2, c->t = 4; });
  const gqa_status kEnum = GQA_STATUS_INVALID_ENUM;
  for (int32_t bad : {-1, 2, 3, 1 << 30}) {
    CAPTURE(bad);
    ExpectRefused("x_dtype", kEnum, [=](Call* c) { c->x_dtype = bad; });
    ExpectRefused("y_dtype", kEnum, [=](Call* c) { c->y_dtype = bad; });
    ExpectRefused("style", kEnum, [=](Call* c) { c->p.style = bad; });
    if (bad != 2) {
      ExpectRefused("scaling", kEnum, [=](Call* c) { c->p.scaling = bad; });
    }
  }
  ExpectRefused("scaling 3", kEnum, [](Call* c) { c->p.scaling = 3; });
}

TEST_CASE("rope refuses bad rotary_dim, theta, scaling and eps") {
  const gqa_status kArg = GQA_STATUS_INVALID_ARGUMENT;
  for (int64_t R : {int64_t{-2}, int64_t{1}, int64_t{7}, int64_t{18},
                    int64_t{D + 2}, INT64_MIN}) {
    CAPTURE(R);
    ExpectRefused("rotary_dim", kArg, [=](Call* c) { c->p.rotary_dim = R; });
  }
  for (double theta : {1.0, 0.5, 0.0, -10.0, double(NAN), double(INFINITY)}) {
    CAPTURE(theta);
    ExpectRefused("theta", kArg, [=](Call* c) { c->p.theta = theta; });
  }
  for (int32_t scaling : {GQA_ROPE_SCALING_LINEAR, GQA_ROPE_SCALING_LLAMA3}) {
    CAPTURE(scaling);
    for (double f : {0.0, -1.0, double(NAN), double(INFINITY), 1e-310}) {
      CAPTURE(f);
      ExpectRefused("factor", kArg,
                    [=](Call* c) { c->p.scaling = scaling, c->p.factor = f; });
    }
  }
  struct Llama3 {
    double lf, hf, L;
  };
  for (const Llama3& l : std::vector<Llama3>{{4, 4, 8192},
                                             {4, 1, 8192},
                                             {0, 4, 8192},
                                             {-1, 4, 8192},
                                             {NAN, 4, 8192},
                                             {1, INFINITY, 8192},
                                             {1, NAN, 8192},
                                             {1, 4, 0},
                                             {1, 4, -8192},
                                             {1, 4, NAN},
                                             {1, 4, INFINITY}}) {
    CAPTURE(l.lf);
    CAPTURE(l.hf);
    CAPTURE(l.L);
    ExpectRefused("llama3", kArg, [=](Call* c) {
      c->p.scaling = GQA_ROPE_SCALING_LLAMA3;
      c->p.low_freq_factor = l.lf, c->p.high_freq_factor = l.hf;
      c->p.original_max_position = l.L;
    });
  }
  for (float eps : {-1e-6f, -1.0f, float(NAN), float(INFINITY)}) {
    CAPTURE(eps);
    ExpectRefused("eps", kArg, [=](Call* c) { c->p.norm_eps = eps; });
  }
}

TEST_CASE("rope refuses positions outside [0, 2^24) and overlaps") {
  const gqa_status kArg = GQA_STATUS_INVALID_ARGUMENT;
  for (int64_t bad : {int64_t{-1}, int64_t{1} << 24, INT64_MAX, INT64_MIN}) {
    for (size_t at : {size_t{0}, size_t{5}}) {  // first and last token
      CAPTURE(bad);
      CAPTURE(at);
      ExpectRefused("position", kArg, [=](Call* c) { c->positions[at] = bad; });
    }
  }
  ExpectRefused(
      "y one float past x", kArg,
      [](Call* c) {
        c->x.resize(kElems + 1, 0.25f);
        c->in = c->x.data(), c->out = c->x.data() + 1;
      },
      "overlaps x");
  ExpectRefused("y == x, other dtype", kArg, [](Call* c) {
    c->out = c->x.data(), c->y_dtype = GQA_DTYPE_F16;
  });
  ExpectRefused("y == x, f16 view of f32", kArg, [](Call* c) {
    c->out = c->x.data(), c->x_dtype = GQA_DTYPE_F16;
  });
  // Valid positions and weights placed inside y's buffer.
  ExpectRefused(
      "y over positions", kArg,
      [](Call* c) {
        memset(c->y.data() + 8, 0, 6 * 8);
        c->pos = reinterpret_cast<const int64_t*>(c->y.data() + 8);
      },
      "overlaps positions");
  ExpectRefused(
      "y over norm_weight", kArg,
      [](Call* c) {
        memcpy(c->y.data() + 40, c->weight.data(), D * 4);
        c->p.norm_weight = reinterpret_cast<const float*>(c->y.data() + 40);
      },
      "overlaps norm_weight");
}

TEST_CASE("rope reads only the parameters it uses") {
  Call c;
  c.p.norm_weight = nullptr;
  c.p.norm_eps = NAN;  // no norm: eps unread
  c.p.factor = NAN, c.p.low_freq_factor = -1, c.p.high_freq_factor = NAN;
  c.p.original_max_position = 0;  // no scaling: all unread
  CHECK(c.Run() == GQA_STATUS_OK);
  c.p.scaling = GQA_ROPE_SCALING_LINEAR, c.p.factor = 2;  // llama3's unread
  CHECK(c.Run() == GQA_STATUS_OK);
  // In place, same dtype, f32 and f16, is no overlap.
  c.out = c.x.data();
  CHECK(c.Run() == GQA_STATUS_OK);
  std::vector<uint16_t> half(kElems, 0x3c00);
  c.in = c.out = half.data();
  c.x_dtype = c.y_dtype = GQA_DTYPE_F16;
  CHECK(c.Run() == GQA_STATUS_OK);
  gqa_rope_params_init(nullptr);  // a no-op, not a crash
}

}  // namespace
}  // namespace test
}  // namespace gqa
