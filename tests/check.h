// doctest face of the one closeness check (src/reference/closeness.h):
// CHECKs that got is within atol + rtol*|want| of the reference everywhere
// and, when not, says how many, the first and the worst element.
#ifndef GQA_TESTS_CHECK_H_
#define GQA_TESTS_CHECK_H_

#include <vector>

#include "doctest/doctest.h"
#include "src/reference/closeness.h"

namespace gqa {
namespace test {

template <class W>
void CheckClose(const std::vector<float>& got, const std::vector<W>& want,
                double rtol, double atol, const char* what) {
  const reference::Closeness c = reference::Compare(got, want, rtol, atol);
  REQUIRE(!c.size_mismatch);
  INFO(c.Describe(what));
  CHECK(c.pass());
}

}  // namespace test
}  // namespace gqa

#endif  // GQA_TESTS_CHECK_H_
