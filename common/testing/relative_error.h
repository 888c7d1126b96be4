// SPDX-License-Identifier: Apache-2.0
// The error measure numeric tests share: max |a - b| / max |b|, the largest difference relative to
// the scale of the reference `b` (so tiny reference values do not blow it up). Header-only.
#ifndef VERDICT_COMMON_TESTING_RELATIVE_ERROR_H_
#define VERDICT_COMMON_TESTING_RELATIVE_ERROR_H_

#include <algorithm>
#include <cmath>

#include "absl/types/span.h"

namespace verdict::testing {

// REQUIRES: a.size() >= b.size().
inline double RelativeError(absl::Span<const float> a, absl::Span<const float> b) {
  double max_diff = 0, max_ref = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    max_diff = std::max(max_diff, std::fabs(static_cast<double>(a[i]) - b[i]));
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(b[i])));
  }
  return max_diff / std::max(max_ref, 1e-30);
}

}  // namespace verdict::testing

#endif  // VERDICT_COMMON_TESTING_RELATIVE_ERROR_H_
