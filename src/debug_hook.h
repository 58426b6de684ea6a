// A debug hook told of lifecycle events, so that tests can count them: every
// core plan made ("plan", in PlanAttention) and every KV cache validation
// ("validate_cache"). Null by default (one load and branch per event); not
// thread-safe to set.
#ifndef GQA_SRC_DEBUG_HOOK_H_
#define GQA_SRC_DEBUG_HOOK_H_

namespace gqa {

using DebugHook = void (*)(const char* event);
void SetDebugHook(DebugHook hook);
void NotifyDebugHook(const char* event);

}  // namespace gqa

#endif  // GQA_SRC_DEBUG_HOOK_H_
