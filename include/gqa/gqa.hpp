// gqa C++ API: RAII and Status over the C ABI of gqa.h, attention.h,
// kv_cache.h, block_cache.h and rope.h, one class a level: Layer (the Keras
// layer, plain and cached forward), Attention (the core over pre-projected
// q/k/v), Rope (RoPE and Q/K norm), KvCache (a cache in caller memory:
// append, attend) and BlockCache (KV cache v2).
// Header-only, so the shared library exports only C symbols. Thread safety is
// that of the C objects (see the C headers).
#ifndef GQA_GQA_HPP_
#define GQA_GQA_HPP_

#include <stdlib.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "gqa/attention.h"
#include "gqa/block_cache.h"
#include "gqa/gqa.h"
#include "gqa/kv_cache.h"
#include "gqa/rope.h"

namespace gqa {

// A status code with its message. Constructing an error copies the message;
// OK costs nothing.
class Status {
 public:
  Status() = default;
  explicit Status(gqa_status code)
      : code_(code),
        message_(code == GQA_STATUS_OK ? "" : gqa_last_error_message()) {}
  bool ok() const { return code_ == GQA_STATUS_OK; }
  gqa_status code() const { return code_; }
  const char* name() const { return gqa_status_name(code_); }
  const std::string& message() const { return message_; }

 private:
  gqa_status code_ = GQA_STATUS_OK;
  std::string message_;
};

// Owning, GQA_WORKSPACE_ALIGNMENT-aligned scratch memory. Allocates in
// Reserve() only, never in a forward call.
class Workspace {
 public:
  Workspace() = default;
  explicit Workspace(size_t bytes) { Reserve(bytes); }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  Workspace(Workspace&& o) noexcept { *this = std::move(o); }
  Workspace& operator=(Workspace&& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
    return *this;
  }
  ~Workspace() { free(data_); }

  // Grows to at least `bytes`; false if out of memory.
  bool Reserve(size_t bytes) {
    if (bytes <= size_) return true;
    const size_t rounded = (bytes + GQA_WORKSPACE_ALIGNMENT - 1) /
                           GQA_WORKSPACE_ALIGNMENT * GQA_WORKSPACE_ALIGNMENT;
    void* p = aligned_alloc(GQA_WORKSPACE_ALIGNMENT, rounded);
    if (p == nullptr) return false;
    free(data_);
    data_ = p;
    size_ = rounded;
    return true;
  }
  void* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

// keras.layers.GroupQueryAttention with its weights.
class Layer {
 public:
  Layer() = default;
  Layer(const Layer&) = delete;
  Layer& operator=(const Layer&) = delete;
  Layer(Layer&& o) noexcept { std::swap(handle_, o.handle_); }
  Layer& operator=(Layer&& o) noexcept {
    std::swap(handle_, o.handle_);
    return *this;
  }
  ~Layer() { gqa_layer_destroy(handle_); }

  static Status Create(const gqa_layer_config& config,
                       const gqa_layer_weights& weights, Layer* out) {
    gqa_layer_t h = nullptr;
    const gqa_status s = gqa_layer_create(&config, &weights, &h);
    if (s == GQA_STATUS_OK) *out = Layer(h);
    return Status(s);
  }

  Status WorkspaceSize(int64_t batch, int64_t query_len, int64_t value_len,
                       size_t* bytes, int64_t max_threads = 1) const {
    return Status(gqa_layer_workspace_size(handle_, batch, query_len, value_len,
                                           max_threads, bytes));
  }

  // Allocation-free: the workspace must already be large enough.
  Status Forward(const gqa_forward_args& args, void* workspace,
                 size_t workspace_size,
                 pthreadpool_t threadpool = nullptr) const {
    return Status(gqa_layer_forward(handle_, &args, workspace, workspace_size,
                                    threadpool));
  }
  Status Forward(const gqa_forward_args& args, const Workspace& workspace,
                 pthreadpool_t threadpool = nullptr) const {
    return Forward(args, workspace.data(), workspace.size(), threadpool);
  }

  // Cached forward (gqa_layer_forward_cached): appends the projected keys
  // and values of args' new tokens to `cache` and attends the new queries
  // to everything cached. The workspace size depends on the cache's shape
  // and new_tokens, not on its lengths.
  Status CachedWorkspaceSize(const gqa_kv_cache& cache, int64_t new_tokens,
                             size_t* bytes, int64_t max_threads = 1) const {
    return Status(gqa_layer_cached_workspace_size(handle_, &cache, new_tokens,
                                                  max_threads, bytes));
  }
  Status ForwardCached(const gqa_forward_args& args, gqa_kv_cache* cache,
                       void* workspace, size_t workspace_size,
                       pthreadpool_t threadpool = nullptr) const {
    return Status(gqa_layer_forward_cached(handle_, &args, cache, workspace,
                                           workspace_size, threadpool));
  }
  Status ForwardCached(const gqa_forward_args& args, gqa_kv_cache* cache,
                       const Workspace& workspace,
                       pthreadpool_t threadpool = nullptr) const {
    return ForwardCached(args, cache, workspace.data(), workspace.size(),
                         threadpool);
  }
  // The same over a KV cache v2 (gqa_layer_forward_block_cached).
  Status CachedWorkspaceSize(const gqa_block_cache& cache, int64_t new_tokens,
                             size_t* bytes, int64_t max_threads = 1) const {
    return Status(gqa_layer_block_cached_workspace_size(
        handle_, &cache, new_tokens, max_threads, bytes));
  }
  Status ForwardCached(const gqa_forward_args& args, gqa_block_cache* cache,
                       const Workspace& workspace,
                       pthreadpool_t threadpool = nullptr) const {
    return Status(gqa_layer_forward_block_cached(
        handle_, &args, cache, workspace.data(), workspace.size(), threadpool));
  }

  gqa_layer_t handle() const { return handle_; }
  explicit operator bool() const { return handle_ != nullptr; }

 private:
  explicit Layer(gqa_layer_t h) : handle_(h) {}
  gqa_layer_t handle_ = nullptr;
};

// The attention core (gqa/attention.h): stateless, so only functions.
class Attention {
 public:
  // Parameters with every default set (gqa_attention_params_init).
  static gqa_attention_params Params() {
    gqa_attention_params p;
    gqa_attention_params_init(&p);
    return p;
  }
  static Status WorkspaceSize(const gqa_attention_params& params, size_t* bytes,
                              int64_t max_threads = 1) {
    return Status(gqa_attention_workspace_size(&params, max_threads, bytes));
  }
  // Allocation-free: the workspace must already be large enough.
  static Status Run(const gqa_attention_params& params, void* workspace,
                    size_t workspace_size, pthreadpool_t threadpool = nullptr) {
    return Status(
        gqa_attention(&params, workspace, workspace_size, threadpool));
  }
  static Status Run(const gqa_attention_params& params,
                    const Workspace& workspace,
                    pthreadpool_t threadpool = nullptr) {
    return Run(params, workspace.data(), workspace.size(), threadpool);
  }
};

// RoPE with an optional RMS norm first (gqa/rope.h): stateless functions.
class Rope {
 public:
  // Parameters with every default set (gqa_rope_params_init).
  static gqa_rope_params Params() {
    gqa_rope_params p;
    gqa_rope_params_init(&p);
    return p;
  }
  // x [B, T, H, D] at positions [B, T] into y (y == x with the same dtype:
  // in place).
  static Status Run(const gqa_rope_params& params, int64_t batch,
                    int64_t tokens, int64_t heads, int64_t head_dim,
                    const int64_t* positions, const void* x, int32_t x_dtype,
                    void* y, int32_t y_dtype) {
    return Status(gqa_rope(&params, batch, tokens, heads, head_dim, positions,
                           x, x_dtype, y, y_dtype));
  }
  // f32 rows rotated in place.
  static Status RunInPlace(const gqa_rope_params& params, int64_t batch,
                           int64_t tokens, int64_t heads, int64_t head_dim,
                           const int64_t* positions, float* rows) {
    return Run(params, batch, tokens, heads, head_dim, positions, rows,
               GQA_DTYPE_F32, rows, GQA_DTYPE_F32);
  }
};

// A KV cache in caller memory (gqa/kv_cache.h). It holds the descriptor
// only: k, v and lengths stay the caller's and must outlive it.
class KvCache {
 public:
  KvCache() = default;
  explicit KvCache(const gqa_kv_cache& cache) : cache_(cache) {}

  // Appends [B, new_tokens, Hkv, D] keys and values in src_dtype; counts
  // [B] takes fewer tokens from some batches (ragged), or nullptr.
  Status Append(int64_t new_tokens, const void* k_new, const void* v_new,
                int32_t src_dtype = GQA_DTYPE_F32,
                const int64_t* counts = nullptr) {
    return Status(gqa_kv_cache_append(&cache_, new_tokens, counts, k_new, v_new,
                                      src_dtype));
  }
  // As Append, each key row normed and rotated by `rope` at its position
  // first (positions [B, new_tokens], or nullptr: the cache positions).
  Status AppendRope(const gqa_rope_params& rope, int64_t new_tokens,
                    const void* k_new, const void* v_new,
                    int32_t src_dtype = GQA_DTYPE_F32,
                    const int64_t* positions = nullptr,
                    const int64_t* counts = nullptr) {
    return Status(gqa_kv_cache_append_rope(&cache_, new_tokens, counts, k_new,
                                           v_new, src_dtype, &rope, positions));
  }
  Status AttendWorkspaceSize(const gqa_kv_attend_params& params, size_t* bytes,
                             int64_t max_threads = 1) const {
    return Status(gqa_kv_cache_attend_workspace_size(&cache_, &params,
                                                     max_threads, bytes));
  }
  // The newest params.q_len tokens of each batch attend to the cache.
  Status Attend(const gqa_kv_attend_params& params, void* workspace,
                size_t workspace_size,
                pthreadpool_t threadpool = nullptr) const {
    return Status(gqa_kv_cache_attend(&cache_, &params, workspace,
                                      workspace_size, threadpool));
  }
  Status Attend(const gqa_kv_attend_params& params, const Workspace& workspace,
                pthreadpool_t threadpool = nullptr) const {
    return Attend(params, workspace.data(), workspace.size(), threadpool);
  }

  // Draft verification: forget the newest tokens; keep an accepted path
  // (indices among the newest `drafts`, ascending).
  Status Truncate(const int64_t* new_lengths) {
    return Status(gqa_kv_cache_truncate(&cache_, new_lengths));
  }
  Status Keep(int64_t batch, int64_t drafts, const int64_t* indices,
              int64_t count) {
    return Status(gqa_kv_cache_keep(&cache_, batch, drafts, indices, count));
  }

  gqa_kv_cache* get() { return &cache_; }
  const gqa_kv_cache& descriptor() const { return cache_; }

 private:
  gqa_kv_cache cache_{};
};

// A KV cache v2 in caller memory (gqa/block_cache.h): blocks, block table
// and lengths stay the caller's and must outlive it.
class BlockCache {
 public:
  BlockCache() = default;
  explicit BlockCache(const gqa_block_cache& cache) : cache_(cache) {}

  // The layout of a configuration (block bytes, table columns, offsets).
  static Status Layout(const gqa_block_cache_config& config,
                       gqa_block_cache_layout* layout) {
    return Status(gqa_block_cache_layout_of(&config, layout));
  }
  // Appends [B, new_tokens, Hkv, D] keys and [.., Dv] values in src_dtype;
  // counts [B] takes fewer tokens from some batches (ragged), or nullptr.
  Status Append(int64_t new_tokens, const void* k_new, const void* v_new,
                int32_t src_dtype = GQA_DTYPE_F32,
                const int64_t* counts = nullptr) {
    return Status(gqa_block_cache_append(&cache_, new_tokens, counts, k_new,
                                         v_new, src_dtype));
  }
  // As Append, with RoPE on the keys (as KvCache::AppendRope).
  Status AppendRope(const gqa_rope_params& rope, int64_t new_tokens,
                    const void* k_new, const void* v_new,
                    int32_t src_dtype = GQA_DTYPE_F32,
                    const int64_t* positions = nullptr,
                    const int64_t* counts = nullptr) {
    return Status(gqa_block_cache_append_rope(&cache_, new_tokens, counts,
                                              k_new, v_new, src_dtype, &rope,
                                              positions));
  }
  Status AttendWorkspaceSize(const gqa_kv_attend_params& params, size_t* bytes,
                             int64_t max_threads = 1) const {
    return Status(gqa_block_cache_attend_workspace_size(&cache_, &params,
                                                        max_threads, bytes));
  }
  // The newest params.q_len tokens of each batch attend to the cache.
  Status Attend(const gqa_kv_attend_params& params, void* workspace,
                size_t workspace_size,
                pthreadpool_t threadpool = nullptr) const {
    return Status(gqa_block_cache_attend(&cache_, &params, workspace,
                                         workspace_size, threadpool));
  }
  Status Attend(const gqa_kv_attend_params& params, const Workspace& workspace,
                pthreadpool_t threadpool = nullptr) const {
    return Attend(params, workspace.data(), workspace.size(), threadpool);
  }
  // The stored rows of a held token, dequantized to f32.
  Status Read(int64_t batch, int64_t position, int64_t head, float* k_row,
              float* v_row) const {
    return Status(
        gqa_block_cache_read(&cache_, batch, position, head, k_row, v_row));
  }

  // Draft verification, as KvCache::Truncate and KvCache::Keep.
  Status Truncate(const int64_t* new_lengths) {
    return Status(gqa_block_cache_truncate(&cache_, new_lengths));
  }
  Status Keep(int64_t batch, int64_t drafts, const int64_t* indices,
              int64_t count) {
    return Status(gqa_block_cache_keep(&cache_, batch, drafts, indices, count));
  }

  gqa_block_cache* get() { return &cache_; }
  const gqa_block_cache& descriptor() const { return cache_; }

 private:
  gqa_block_cache cache_{};
};

}  // namespace gqa

#endif  // GQA_GQA_HPP_
