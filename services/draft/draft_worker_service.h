// SPDX-License-Identifier: Apache-2.0
// The draft worker's gRPC service (verdict.v1.DraftWorker): validate, convert, enqueue on the
// engine loop, finish. Nothing else; the work is workers::DraftWorkerLoop's.
#ifndef VERDICT_SERVICES_DRAFT_DRAFT_WORKER_SERVICE_H_
#define VERDICT_SERVICES_DRAFT_DRAFT_WORKER_SERVICE_H_

#include "verdict/v1/draft_worker.grpc.pb.h"
#include "workers/draft_worker_loop.h"

namespace verdict::services {

class DraftWorkerService final : public v1::DraftWorker::CallbackService {
 public:
  // `loop` must outlive the service (the worker validates every request). `description`: what
  // Describe answers.
  DraftWorkerService(workers::DraftWorkerLoop* loop, v1::DraftDescription description);

  grpc::ServerUnaryReactor* OpenSession(grpc::CallbackServerContext* context,
                                        const v1::OpenDraftSessionRequest* request,
                                        v1::OpenDraftSessionResponse* response) override;
  grpc::ServerUnaryReactor* Propose(grpc::CallbackServerContext* context, const v1::ProposeRequest* request,
                                    v1::ProposeResponse* response) override;
  grpc::ServerUnaryReactor* CloseSession(grpc::CallbackServerContext* context,
                                         const v1::CloseDraftSessionRequest* request,
                                         v1::CloseDraftSessionResponse* response) override;
  grpc::ServerUnaryReactor* Describe(grpc::CallbackServerContext* context, const v1::DescribeDraftRequest* request,
                                     v1::DraftDescription* response) override;
  grpc::ServerUnaryReactor* RenewLease(grpc::CallbackServerContext* context, const v1::RenewDraftLeaseRequest* request,
                                       v1::RenewDraftLeaseResponse* response) override;

 private:
  workers::DraftWorkerLoop* loop_;
  const v1::DraftDescription description_;
};

}  // namespace verdict::services

#endif  // VERDICT_SERVICES_DRAFT_DRAFT_WORKER_SERVICE_H_
