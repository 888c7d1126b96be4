// SPDX-License-Identifier: Apache-2.0
#include "common/check.h"

#include <cstdio>
#include <cstdlib>

namespace verdict::internal {
void CheckFailed(const char* file, int line, const char* condition, const char* message) {
  std::fprintf(stderr, "verdict: CHECK failed at %s:%d: %s %s\n", file, line, condition, message);
  std::fflush(stderr);
  std::abort();
}
}  // namespace verdict::internal
