// SPDX-License-Identifier: Apache-2.0
#include "services/draft/draft_worker_service.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "clients/grpc/wire_convert.h"
#include "services/reactor_util.h"

namespace verdict::services {

DraftWorkerService::DraftWorkerService(workers::DraftWorkerLoop* loop, v1::DraftDescription description)
    : loop_(loop), description_(std::move(description)) {}

grpc::ServerUnaryReactor* DraftWorkerService::OpenSession(grpc::CallbackServerContext* context,
                                                          const v1::OpenDraftSessionRequest* request,
                                                          v1::OpenDraftSessionResponse*) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  std::vector<int32_t> prompt(request->prompt_tokens().begin(), request->prompt_tokens().end());
  loop_->OpenSession(spec::DraftSessionId(request->session_id()), std::move(prompt), wire::FromProto(request->sampling()),
                     request->capacity(), /*record_distributions=*/false,
                     [reactor](absl::Status status) { reactor->Finish(wire::ToGrpc(status)); });
  return reactor;
}

grpc::ServerUnaryReactor* DraftWorkerService::Propose(grpc::CallbackServerContext* context,
                                                      const v1::ProposeRequest* request,
                                                      v1::ProposeResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  spec::ProposeRequest r = wire::FromProto(*request);
  const auto start = std::chrono::steady_clock::now();
  loop_->Propose(std::move(r), [reactor, response, start](absl::StatusOr<spec::Proposal> proposal) {
    if (proposal.ok()) {
      response->set_step(proposal->step);
      wire::ToProto(proposal->block, response->mutable_block());
      response->set_sequence_length(static_cast<int32_t>(proposal->sequence_length));
      response->set_worker_micros(std::chrono::duration_cast<std::chrono::microseconds>(
                                      std::chrono::steady_clock::now() - start).count());
    }
    reactor->Finish(wire::ToGrpc(proposal.status()));
  });
  return reactor;
}

grpc::ServerUnaryReactor* DraftWorkerService::CloseSession(grpc::CallbackServerContext* context,
                                                           const v1::CloseDraftSessionRequest* request,
                                                           v1::CloseDraftSessionResponse*) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  loop_->CloseSession(spec::DraftSessionId(request->session_id()));
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* DraftWorkerService::RenewLease(grpc::CallbackServerContext* context,
                                                         const v1::RenewDraftLeaseRequest* request,
                                                         v1::RenewDraftLeaseResponse*) {
  loop_->RenewLease({request->owner(), absl::Milliseconds(request->lease_ms()),
                     std::vector<uint64_t>(request->live_session_ids().begin(), request->live_session_ids().end())});
  return FinishNow(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* DraftWorkerService::Describe(grpc::CallbackServerContext* context,
                                                       const v1::DescribeDraftRequest*, v1::DraftDescription* response) {
  *response = description_;
  return FinishNow(context, absl::OkStatus());
}

}  // namespace verdict::services
