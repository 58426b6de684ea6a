// One dense projection of the layer, y = x . W + b, hiding the fork between
// the f32 path (an XNNPACK fully-connected operator) and the f16 path
// (f16 weights packed with padded columns, run by the dense f16 kernel).
#ifndef GQA_SRC_PROJECTION_H_
#define GQA_SRC_PROJECTION_H_

#include <stddef.h>
#include <stdint.h>
#include <xnnpack.h>

#include <mutex>

#include "gqa/gqa.h"

namespace gqa {

// XNNPACK may read this many bytes past the end of an input row.
constexpr int64_t kXnnExtraBytes = XNN_EXTRA_BYTES;

class Projection {
 public:
  Projection() = default;
  Projection(const Projection&) = delete;
  Projection& operator=(const Projection&) = delete;
  ~Projection();

  // f32: kernel [in, out] and bias [out] (or null) in Keras' layout; the
  // operator packs its own copy.
  gqa_status CreateF32(int64_t in, int64_t out, const float* kernel,
                       const float* bias, const char* name);
  // f16: takes [in, ldc] f16 weights and [ldc] f32 bias at byte `offset`
  // of `base` and returns the offset past them; ldc = out rounded up to
  // kDenseColumnChunk. With a null base only offsets are computed (carving
  // at a null base gives the size of the storage); PackF16 then fills the
  // carved storage from Keras' f16 layout.
  int64_t CarveF16(int64_t in, int64_t out, unsigned char* base,
                   int64_t offset);
  void PackF16(const void* kernel, const void* bias);

  int64_t in() const { return in_; }
  int64_t out() const { return out_; }
  // Elements between output rows that Run writes (f16 path: padded).
  int64_t ldc() const { return ldc_; }

  // y[r, 0..ldc) = x[r, 0..in) . W + b for r < m; x rows `in` apart.
  // f32 path: `tail` is an in-float row of scratch that keeps XNNPACK from
  // reading past x's last row, or null where x may be over-read (workspace
  // rows with XNN_EXTRA_BYTES slack). Thread-safe (the f32 operator keeps a
  // setup inside: its mutex is held over setup + run).
  gqa_status Run(int64_t m, const float* x, float* y, float* tail,
                 pthreadpool_t pool) const;

 private:
  int64_t in_ = 0, out_ = 0, ldc_ = 0;
  xnn_operator_t op_ = nullptr;
  mutable std::mutex mu_;  // a pthread mutex: nothing is allocated
  uint16_t* w_ = nullptr;  // f16 path: [in, ldc]
  float* b_ = nullptr;     // f16 path: [ldc], zeros past out (or no bias)
  bool has_bias_ = false;
};

}  // namespace gqa

#endif  // GQA_SRC_PROJECTION_H_
