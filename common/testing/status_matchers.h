// SPDX-License-Identifier: Apache-2.0
// GoogleTest helpers for absl::Status / absl::StatusOr (Debian's Abseil ships none):
// ASSERT_OK, EXPECT_OK, ASSERT_OK_AND_ASSIGN, IsOk(), StatusIs(code[, message_matcher]).
#ifndef VERDICT_COMMON_TESTING_STATUS_MATCHERS_H_
#define VERDICT_COMMON_TESTING_STATUS_MATCHERS_H_

#include <ostream>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace verdict::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) { return s.status(); }

MATCHER(IsOk, "is OK") {
  const absl::Status& s = ::verdict::testing::GetStatus(arg);
  if (!s.ok()) *result_listener << "status: " << s.ToString();
  return s.ok();
}

MATCHER_P(StatusIs, code, "has status code " + absl::StatusCodeToString(code)) {
  const absl::Status& s = ::verdict::testing::GetStatus(arg);
  *result_listener << "status: " << s.ToString();
  return s.code() == code;
}

MATCHER_P2(StatusIs, code, message_matcher,
           "has status code " + absl::StatusCodeToString(code) + " and a matching message") {
  const absl::Status& s = ::verdict::testing::GetStatus(arg);
  *result_listener << "status: " << s.ToString();
  return s.code() == code &&
         ::testing::ExplainMatchResult(message_matcher, std::string(s.message()), result_listener);
}

}  // namespace verdict::testing

#define VERDICT_TESTING_CONCAT_INNER_(a, b) a##b
#define VERDICT_TESTING_CONCAT_(a, b) VERDICT_TESTING_CONCAT_INNER_(a, b)

#define EXPECT_OK(expr) EXPECT_THAT((expr), ::verdict::testing::IsOk())
#define ASSERT_OK(expr) ASSERT_THAT((expr), ::verdict::testing::IsOk())
#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  ASSERT_OK_AND_ASSIGN_IMPL_(VERDICT_TESTING_CONCAT_(statusor_, __LINE__), lhs, expr)
#define ASSERT_OK_AND_ASSIGN_IMPL_(statusor, lhs, expr)          \
  auto statusor = (expr);                                        \
  ASSERT_TRUE(statusor.ok()) << statusor.status().ToString();    \
  lhs = std::move(statusor).value()

#endif  // VERDICT_COMMON_TESTING_STATUS_MATCHERS_H_
