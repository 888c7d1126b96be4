// SPDX-License-Identifier: Apache-2.0
#include "engine/kernels/vec_ops.h"

namespace verdict::engine::vec {

// Not under ThreadSanitizer: the clones' ifunc resolvers run during relocation, before TSan's
// runtime is up, and crash instrumented.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__SANITIZE_THREAD__)
#define VERDICT_MULTIVERSION __attribute__((target_clones("avx2,fma", "default")))
#else
#define VERDICT_MULTIVERSION
#endif

VERDICT_MULTIVERSION
float Dot(const float* a, const float* b, int64_t n) {
  // Eight independent partial sums let the compiler vectorise without reassociating.
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  }
  float total = 0;
  for (; i < n; ++i) total += a[i] * b[i];
  for (int j = 0; j < 8; ++j) total += acc[j];
  return total;
}

VERDICT_MULTIVERSION
void Axpy(float alpha, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

VERDICT_MULTIVERSION
double SumSquares(const float* x, int64_t n) {
  double acc[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    for (int j = 0; j < 4; ++j) acc[j] += static_cast<double>(x[i + j]) * x[i + j];
  }
  double total = acc[0] + acc[1] + acc[2] + acc[3];
  for (; i < n; ++i) total += static_cast<double>(x[i]) * x[i];
  return total;
}

}  // namespace verdict::engine::vec
