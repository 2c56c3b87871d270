// Status propagation helpers for absl::Status / absl::StatusOr.
//
// RETURN_IF_ERROR(expr): returns the status of `expr` from the enclosing function when it is not
// OK. ASSIGN_OR_RETURN(lhs, expr): evaluates an absl::StatusOr expression, returns its status on
// error, otherwise move-assigns the value to `lhs` (which may be a declaration). Header-only; no
// state; safe from any thread.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define PARA_CONCAT_INNER(a, b) a##b
#define PARA_CONCAT(a, b) PARA_CONCAT_INNER(a, b)

#define RETURN_IF_ERROR(expr)                    \
  do {                                           \
    ::absl::Status para_status_ = (expr);        \
    if (!para_status_.ok()) return para_status_; \
  } while (0)

#define PARA_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(tmp).value()

#define ASSIGN_OR_RETURN(lhs, expr) \
  PARA_ASSIGN_OR_RETURN_IMPL(PARA_CONCAT(para_statusor_, __LINE__), lhs, expr)
