// The one closeness check against a reference: |got - want| <= atol +
// rtol * |want| elementwise (NaN fails), with the count of misses, the
// first miss and the worst element, for the tests (tests/check.h) and the
// tools (bench/).
#ifndef GQA_SRC_REFERENCE_CLOSENESS_H_
#define GQA_SRC_REFERENCE_CLOSENESS_H_

#include <math.h>
#include <stddef.h>
#include <stdio.h>

#include <string>
#include <vector>

namespace gqa {
namespace reference {

struct Closeness {
  size_t count = 0;  // elements compared
  size_t bad = 0;    // elements out of tolerance (all on a size miss)
  bool size_mismatch = false;
  size_t first_bad = 0;      // index of the first miss
  size_t worst = 0;          // index of the largest |got - want| (NaN first)
  double max_abs_err = 0.0;  // NaN sticks; INFINITY on a size miss
  double first_got = 0.0, first_want = 0.0;
  double worst_got = 0.0, worst_want = 0.0;

  bool pass() const { return bad == 0; }
  std::string Describe(const char* what) const {
    char buf[320];
    if (size_mismatch) {
      snprintf(buf, sizeof(buf), "%s: size mismatch (%zu elements)", what,
               count);
    } else {
      snprintf(
          buf, sizeof(buf),
          "%s: %zu of %zu elements out of tolerance; first at %zu got %.9g "
          "want %.9g; max abs err %.3e at %zu (got %.9g want %.9g)",
          what, bad, count, first_bad, first_got, first_want, max_abs_err,
          worst, worst_got, worst_want);
    }
    return buf;
  }
};

// got: float (or half widened to float), want: the reference (double or
// float), same logical layout.
template <class G, class W>
Closeness Compare(const std::vector<G>& got, const std::vector<W>& want,
                  double rtol, double atol) {
  Closeness c;
  c.count = got.size();
  if (got.size() != want.size()) {
    c.size_mismatch = true;
    c.bad = got.size() > want.size() ? got.size() : want.size();
    c.max_abs_err = INFINITY;
    return c;
  }
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = static_cast<double>(got[i]);
    const double w = static_cast<double>(want[i]);
    const double err = fabs(g - w);
    if (!(err <= atol + rtol * fabs(w))) {
      if (c.bad++ == 0) c.first_bad = i, c.first_got = g, c.first_want = w;
    }
    if (!(err <= c.max_abs_err) && !isnan(c.max_abs_err)) {
      c.max_abs_err = err;
      c.worst = i, c.worst_got = g, c.worst_want = w;
    }
  }
  return c;
}

}  // namespace reference
}  // namespace gqa

#endif  // GQA_SRC_REFERENCE_CLOSENESS_H_
