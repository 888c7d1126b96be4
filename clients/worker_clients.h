// SPDX-License-Identifier: Apache-2.0
// What the coordinator needs from the draft worker and the chain of target shards, as asynchronous
// interfaces. Implementations: gRPC (clients/grpc/grpc_worker_clients.h, the production path),
// in-process over the workers' engine loops (workers/in_process_clients.h, for tests and a
// one-process deployment) and scripted fakes (clients/testing/, for the coordinator's tests).
// Callbacks may run on any thread and must return quickly.
#ifndef VERDICT_CLIENTS_WORKER_CLIENTS_H_
#define VERDICT_CLIENTS_WORKER_CLIENTS_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "spec/ids.h"
#include "spec/messages.h"
#include "spec/sampling_params.h"
#include "spec/speculation_params.h"

namespace verdict::clients {

using StatusCallback = std::function<void(absl::Status)>;

struct DraftSessionSpec {
  spec::DraftSessionId session_id;
  std::vector<int32_t> prompt;
  spec::SamplingParams sampling;  // the draft's own sampling
  int64_t capacity = 0;
  // Proposals carry the draft's whole distributions (the KL rule). In-process only: they do not
  // travel over the wire, and the gRPC client refuses such a session.
  bool record_distributions = false;
};

class DraftClient {
 public:
  virtual ~DraftClient() = default;
  virtual void OpenSession(const DraftSessionSpec& session, StatusCallback done) = 0;
  // At most one Propose per session is in flight at a time (the coordinator's rule). A worker
  // that does not answer in time completes with kDeadlineExceeded or kUnavailable.
  virtual void Propose(const spec::ProposeRequest& request,
                       std::function<void(absl::StatusOr<spec::Proposal>)> done) = 0;
  virtual void CloseSession(spec::DraftSessionId session_id) = 0;  // best effort, no reply
  // Keeps the sessions of coordinator incarnation `renewal.owner` (the high 32 bits of their ids)
  // alive for `renewal.lease` from now; the worker may release those it holds that the renewal does
  // not name (workers/session_leases.h). Best effort, no reply.
  virtual void RenewLease(const spec::LeaseRenewal& renewal) = 0;
};

struct TargetSessionSpec {
  spec::SessionId session_id;
  int64_t capacity = 0;
  // How the last shard verifies (it alone turns these into its rules) and the target's sampling.
  spec::SpeculationParams params;
  spec::SamplingParams target_sampling;
};

class TargetClient {
 public:
  virtual ~TargetClient() = default;
  // Opens the session on every shard; done(OK) once all have it.
  virtual void OpenSession(const TargetSessionSpec& session, StatusCallback done) = 0;
  // Sends one block (with its token ids) into shard 0; `done` receives the last shard's verdict,
  // or the error of the shard that failed the block (kUnavailable naming a shard that is down).
  virtual void Verify(const spec::ShardBlock& block, std::vector<int32_t> token_ids,
                      std::function<void(spec::BlockOutcome)> done) = 0;
  virtual void CloseSession(spec::SessionId session_id) = 0;  // on every shard, best effort
  virtual void RenewLease(const spec::LeaseRenewal& renewal) = 0;  // on every shard, as above
  virtual int num_shards() const = 0;
};

}  // namespace verdict::clients

#endif  // VERDICT_CLIENTS_WORKER_CLIENTS_H_
