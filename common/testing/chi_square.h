// SPDX-License-Identifier: Apache-2.0
// Pearson's chi-square goodness-of-fit test for statistical tests of samplers: the statistic, its
// degrees of freedom and the p-value (upper tail of the chi-square distribution, computed with the
// regularized incomplete gamma function). Header-only; pure functions.
#ifndef VERDICT_COMMON_TESTING_CHI_SQUARE_H_
#define VERDICT_COMMON_TESTING_CHI_SQUARE_H_

#include <cmath>
#include <cstdint>
#include <vector>

namespace verdict::testing {

// Q(a, x) = Gamma(a, x) / Gamma(a): series for x < a + 1, Lentz continued fraction otherwise
// (Numerical Recipes' split), accurate to ~1e-12 for the sizes tests use.
inline double RegularizedUpperGamma(double a, double x) {
  if (x <= 0) return 1.0;
  const double log_prefix = -x + a * std::log(x) - std::lgamma(a);
  if (x < a + 1) {
    double term = 1.0 / a, sum = term;
    for (int n = 1; n < 10000 && std::fabs(term) > std::fabs(sum) * 1e-15; ++n) {
      term *= x / (a + n);
      sum += term;
    }
    return 1.0 - sum * std::exp(log_prefix);
  }
  const double tiny = 1e-300;
  double b = x + 1 - a, c = 1 / tiny, d = 1 / b, h = d;
  for (int i = 1; i < 10000; ++i) {
    const double an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (std::fabs(d) < tiny) d = tiny;
    c = b + an / c;
    if (std::fabs(c) < tiny) c = tiny;
    d = 1 / d;
    const double delta = d * c;
    h *= delta;
    if (std::fabs(delta - 1) < 1e-15) break;
  }
  return std::exp(log_prefix) * h;
}

struct ChiSquareResult {
  double statistic = 0;
  int degrees_of_freedom = 0;
  double p_value = 1;
};

// Observed counts against expected probabilities (normalised here). Cells whose expected count is
// below 5 are pooled into one cell, as the test's approximation requires. A cell with expected
// probability 0 but observations makes the p-value 0.
inline ChiSquareResult ChiSquareTest(const std::vector<int64_t>& counts, const std::vector<double>& probs) {
  double total = 0, mass = 0;
  for (int64_t c : counts) total += static_cast<double>(c);
  for (double p : probs) mass += p;
  ChiSquareResult r;
  double pooled_observed = 0, pooled_expected = 0;
  int cells = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    const double expected = total * probs[i] / mass;
    if (expected == 0) {
      if (counts[i] > 0) return {INFINITY, 0, 0.0};
      continue;
    }
    if (expected < 5) {
      pooled_observed += static_cast<double>(counts[i]);
      pooled_expected += expected;
      continue;
    }
    const double diff = static_cast<double>(counts[i]) - expected;
    r.statistic += diff * diff / expected;
    ++cells;
  }
  if (pooled_expected > 0) {
    const double diff = pooled_observed - pooled_expected;
    r.statistic += diff * diff / pooled_expected;
    ++cells;
  }
  r.degrees_of_freedom = cells - 1;
  r.p_value = r.degrees_of_freedom > 0 ? RegularizedUpperGamma(r.degrees_of_freedom / 2.0, r.statistic / 2.0) : 1.0;
  return r;
}

}  // namespace verdict::testing

#endif  // VERDICT_COMMON_TESTING_CHI_SQUARE_H_
