// The layer's projections: XNNPACK fully-connected (f32) or packed f16
// weights through the dense f16 kernel (src/projection.h).
#include "src/projection.h"

#include <math.h>
#include <string.h>

#include "src/dense_f16.h"
#include "src/status.h"

namespace gqa {

Projection::~Projection() {
  if (op_) xnn_delete_operator(op_);
}

gqa_status Projection::CreateF32(int64_t in, int64_t out, const float* kernel,
                                 const float* bias, const char* name) {
  in_ = in;
  out_ = ldc_ = out;
  const xnn_status s = xnn_create_fully_connected_nc_f32(
      static_cast<size_t>(in), static_cast<size_t>(out),
      static_cast<size_t>(in), static_cast<size_t>(out), kernel, bias,
      -INFINITY, INFINITY, XNN_FLAG_TRANSPOSE_WEIGHTS, &op_);
  if (s == xnn_status_out_of_memory) {
    return Fail(GQA_STATUS_OUT_OF_MEMORY, "out of memory creating `%s`", name);
  }
  if (s != xnn_status_success) {
    return Fail(GQA_STATUS_BACKEND_FAILURE,
                "XNNPACK could not create the `%s` projection (status %d)",
                name, static_cast<int>(s));
  }
  return GQA_STATUS_OK;
}

int64_t Projection::CarveF16(int64_t in, int64_t out, unsigned char* base,
                             int64_t offset) {
  in_ = in;
  out_ = out;
  ldc_ = (out + kDenseColumnChunk - 1) / kDenseColumnChunk * kDenseColumnChunk;
  const int64_t w_bytes = (in * ldc_ * 2 + 63) / 64 * 64;
  const int64_t b_bytes = (ldc_ * 4 + 63) / 64 * 64;
  w_ = base ? reinterpret_cast<uint16_t*>(base + offset) : nullptr;
  b_ = base ? reinterpret_cast<float*>(base + offset + w_bytes) : nullptr;
  return offset + w_bytes + b_bytes;
}

void Projection::PackF16(const void* kernel, const void* bias) {
  PackHalfKernel(kernel, in_, out_, ldc_, w_);
  PackHalfBias(bias, out_, ldc_, b_);
  has_bias_ = bias != nullptr;
}

gqa_status Projection::Run(int64_t m, const float* x, float* y, float* tail,
                           pthreadpool_t pool) const {
  if (!op_) {
    DenseF16Params d;
    d.a = x;
    d.lda = in_;
    d.k = in_;
    d.w = w_;
    d.n_padded = ldc_;
    d.bias = has_bias_ ? b_ : nullptr;
    d.c = y;
    d.ldc = ldc_;
    d.m = m;
    RunDenseF16(d, pool);
    return GQA_STATUS_OK;
  }
  std::lock_guard<std::mutex> lock(mu_);
  xnn_status s = xnn_status_success;
  // Rows [0, m-1) straight from x (their over-read lands in the next row),
  // the last one from the padded copy in tail.
  const int64_t direct = tail ? m - 1 : m;
  if (direct > 0) {
    s = xnn_setup_fully_connected_nc_f32(op_, static_cast<size_t>(direct), x, y,
                                         pool);
    if (s == xnn_status_success) s = xnn_run_operator(op_, pool);
  }
  if (tail && s == xnn_status_success) {
    memcpy(tail, x + (m - 1) * in_, static_cast<size_t>(in_) * 4);
    s = xnn_setup_fully_connected_nc_f32(op_, 1, tail, y + (m - 1) * ldc_,
                                         pool);
    if (s == xnn_status_success) s = xnn_run_operator(op_, pool);
  }
  if (s != xnn_status_success) {
    return Fail(GQA_STATUS_BACKEND_FAILURE,
                "XNNPACK fully-connected failed (status %d)",
                static_cast<int>(s));
  }
  return GQA_STATUS_OK;
}

}  // namespace gqa
