// SPDX-License-Identifier: Apache-2.0
// Small helpers shared by the gRPC service adapters.
#ifndef VERDICT_SERVICES_REACTOR_UTIL_H_
#define VERDICT_SERVICES_REACTOR_UTIL_H_

#include "absl/status/status.h"
#include "clients/grpc/wire_convert.h"
#include "grpcpp/grpcpp.h"

namespace verdict::services {

// Finishes a unary call right away with `status` (for calls answered without the engine loop).
inline grpc::ServerUnaryReactor* FinishNow(grpc::CallbackServerContext* context, const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(wire::ToGrpc(status));
  return reactor;
}

}  // namespace verdict::services

#endif  // VERDICT_SERVICES_REACTOR_UTIL_H_
