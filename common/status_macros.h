// SPDX-License-Identifier: Apache-2.0
// Status propagation macros. Debian's Abseil (20220623) predates ABSL_RETURN_IF_ERROR,
// so we keep our own two. Thread-safe (pure macros).
#ifndef VERDICT_COMMON_STATUS_MACROS_H_
#define VERDICT_COMMON_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define VERDICT_STATUS_CONCAT_INNER_(a, b) a##b
#define VERDICT_STATUS_CONCAT_(a, b) VERDICT_STATUS_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define VERDICT_RETURN_IF_ERROR(expr)                \
  do {                                               \
    ::absl::Status verdict_status_ = (expr);         \
    if (!verdict_status_.ok()) return verdict_status_; \
  } while (0)

// VERDICT_ASSIGN_OR_RETURN(lhs, expr): evaluates `expr` (an absl::StatusOr<T>); on error
// returns its status, otherwise moves the value into `lhs` (which may be a declaration).
#define VERDICT_ASSIGN_OR_RETURN(lhs, expr) \
  VERDICT_ASSIGN_OR_RETURN_IMPL_(VERDICT_STATUS_CONCAT_(verdict_statusor_, __LINE__), lhs, expr)
#define VERDICT_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                   \
  if (!statusor.ok()) return std::move(statusor).status();  \
  lhs = std::move(statusor).value()

#endif  // VERDICT_COMMON_STATUS_MACROS_H_
