// SPDX-License-Identifier: Apache-2.0
// VERDICT_CHECK / VERDICT_DCHECK: abort with file:line on a broken invariant (a bug, never bad
// input: bad input gets an absl::Status). Debian's Abseil has no absl/log. Thread-safe.
#ifndef VERDICT_COMMON_CHECK_H_
#define VERDICT_COMMON_CHECK_H_

namespace verdict::internal {
[[noreturn]] void CheckFailed(const char* file, int line, const char* condition, const char* message);
}  // namespace verdict::internal

#define VERDICT_CHECK(cond)                                                     \
  do {                                                                          \
    if (!(cond)) ::verdict::internal::CheckFailed(__FILE__, __LINE__, #cond, ""); \
  } while (0)
#define VERDICT_CHECK_MSG(cond, msg)                                              \
  do {                                                                            \
    if (!(cond)) ::verdict::internal::CheckFailed(__FILE__, __LINE__, #cond, msg); \
  } while (0)
#ifdef NDEBUG
#define VERDICT_DCHECK(cond) \
  do {                       \
  } while (false && (cond))
#else
#define VERDICT_DCHECK(cond) VERDICT_CHECK(cond)
#endif

#endif  // VERDICT_COMMON_CHECK_H_
