// Consumer of an installed gqa: creates a layer and reports a bad call.
#include <cstdio>
#include <vector>

#include "gqa/gqa.hpp"

int main() {
  gqa_layer_config c;
  gqa_layer_config_init(&c, 4, 2, 1, 6, 6);
  c.use_bias = 0;
  std::vector<float> wq(6 * 2 * 4, 0.1f), wkv(6 * 4, 0.1f), wo(8 * 6, 0.1f);
  gqa_layer_weights w{};
  w.query_kernel = wq.data();
  w.key_kernel = wkv.data();
  w.value_kernel = wkv.data();
  w.output_kernel = wo.data();
  gqa::Layer layer;
  if (!gqa::Layer::Create(c, w, &layer).ok()) return 1;
  std::vector<float> x(6, 1.0f), out(6, 0.0f);
  gqa_forward_args a{};
  a.batch = a.query_len = a.value_len = 1;
  a.query = a.value = x.data();
  a.output = out.data();
  size_t bytes = 0;
  if (!layer.WorkspaceSize(1, 1, 1, &bytes).ok()) return 1;
  gqa::Workspace ws(bytes);
  const gqa::Status s = layer.Forward(a, ws);
  std::printf("forward: %s, out[0] = %g\n", s.name(), out[0]);
  a.batch = 0;
  const gqa::Status bad = layer.Forward(a, ws);
  std::printf("bad call: %s (%s)\n", bad.name(), bad.message().c_str());
  return s.ok() && bad.code() == GQA_STATUS_INVALID_SIZE ? 0 : 1;
}
