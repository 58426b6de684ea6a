// doctest main for the gqa suites: prints the Highway targets this CPU runs
// (the tests force each of them in turn) before running the cases.
#define DOCTEST_CONFIG_IMPLEMENT
#include <stdio.h>

#include "doctest/doctest.h"
#include "tests/layer_case.h"

int main(int argc, char** argv) {
  printf("gqa tests: Highway targets run on this CPU: %s\n",
         gqa::test::TargetNames().c_str());
  doctest::Context context(argc, argv);
  return context.run();
}
