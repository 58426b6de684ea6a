// The lifecycle debug hook (src/debug_hook.h).
#include "src/debug_hook.h"

namespace gqa {
namespace {

DebugHook g_debug_hook = nullptr;

}  // namespace

void SetDebugHook(DebugHook hook) { g_debug_hook = hook; }

void NotifyDebugHook(const char* event) {
  if (g_debug_hook) g_debug_hook(event);
}

}  // namespace gqa
