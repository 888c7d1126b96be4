// SPDX-License-Identifier: Apache-2.0
#include "clients/grpc/grpc_worker_clients.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "clients/grpc/wire_convert.h"
#include "clients/status_join.h"
#include "grpcpp/grpcpp.h"

namespace verdict::clients {
namespace {

std::chrono::system_clock::time_point After(absl::Duration d) {
  return std::chrono::system_clock::now() + absl::ToChronoMilliseconds(d);
}

// A failed call's status, naming the peer (the coordinator reports it to clients).
absl::Status Named(const grpc::Status& status, absl::string_view who) {
  absl::Status s = wire::FromGrpc(status);
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(who, ": ", s.message()));
}

// Channels to workers reconnect quickly: a restarted shard or draft worker is used again within a
// second instead of after gRPC's default exponential backoff (up to two minutes).
std::shared_ptr<grpc::Channel> WorkerChannel(const std::string& address,
                                            std::shared_ptr<grpc::ChannelCredentials> credentials) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetMaxReceiveMessageSize(64 << 20);
  return grpc::CreateCustomChannel(address, credentials != nullptr ? credentials : grpc::InsecureChannelCredentials(),
                                   args);
}

// Keeps a unary call's context and messages alive until its callback ran.
template <typename Request, typename Response>
struct Call {
  grpc::ClientContext context;
  Request request;
  Response response;
};

}  // namespace

// ---- Draft worker ----------------------------------------------------------------------------

GrpcDraftClient::GrpcDraftClient(const std::string& address, absl::Duration propose_deadline,
                                 absl::Duration control_deadline,
                                 std::shared_ptr<grpc::ChannelCredentials> credentials)
    : address_(address),
      propose_deadline_(propose_deadline),
      control_deadline_(control_deadline),
      channel_(WorkerChannel(address, std::move(credentials))),
      stub_(v1::DraftWorker::NewStub(channel_)) {}

bool GrpcDraftClient::connected() const { return channel_->GetState(/*try_to_connect=*/true) == GRPC_CHANNEL_READY; }

void GrpcDraftClient::OpenSession(const DraftSessionSpec& session, StatusCallback done) {
  if (session.record_distributions) {
    done(absl::InvalidArgumentError("the draft's whole distributions (the lossy-kl policy) do not travel over the wire"));
    return;
  }
  auto call = std::make_shared<Call<v1::OpenDraftSessionRequest, v1::OpenDraftSessionResponse>>();
  call->context.set_deadline(After(control_deadline_));
  call->request.set_session_id(session.session_id.value());
  call->request.mutable_prompt_tokens()->Assign(session.prompt.begin(), session.prompt.end());
  wire::ToProto(session.sampling, call->request.mutable_sampling());
  call->request.set_capacity(static_cast<int32_t>(session.capacity));
  const std::string who = absl::StrCat("draft worker ", address_);
  stub_->async()->OpenSession(&call->context, &call->request, &call->response,
                              [call, done = std::move(done), who](grpc::Status status) {
                                done(Named(status, who));
                              });
}

void GrpcDraftClient::Propose(const spec::ProposeRequest& request,
                              std::function<void(absl::StatusOr<spec::Proposal>)> done) {
  auto call = std::make_shared<Call<v1::ProposeRequest, v1::ProposeResponse>>();
  call->context.set_deadline(After(propose_deadline_));
  call->request.set_session_id(request.session_id.value());
  call->request.set_step(request.step);
  call->request.set_keep_length(static_cast<int32_t>(request.keep_length));
  call->request.mutable_append_tokens()->Assign(request.append_tokens.begin(), request.append_tokens.end());
  call->request.set_num_tokens(static_cast<int32_t>(request.num_tokens));
  const std::string who = absl::StrCat("draft worker ", address_);
  const int64_t asked = request.num_tokens;
  stub_->async()->Propose(&call->context, &call->request, &call->response,
                          [call, done = std::move(done), who, asked](grpc::Status status) {
                            if (!status.ok()) {
                              done(Named(status, who));
                              return;
                            }
                            absl::StatusOr<spec::DraftBlock> block = wire::FromProto(call->response.block());
                            if (!block.ok() || static_cast<int64_t>(block->tokens.size()) != asked) {
                              done(absl::InternalError(absl::StrCat(who, " returned a malformed proposal")));
                              return;
                            }
                            done(spec::Proposal{call->response.step(), std::move(*block),
                                                   call->response.sequence_length()});
                          });
}

void GrpcDraftClient::CloseSession(spec::DraftSessionId session_id) {
  auto call = std::make_shared<Call<v1::CloseDraftSessionRequest, v1::CloseDraftSessionResponse>>();
  call->context.set_deadline(After(control_deadline_));
  call->request.set_session_id(session_id.value());
  stub_->async()->CloseSession(&call->context, &call->request, &call->response, [call](grpc::Status) {});
}

void GrpcDraftClient::RenewLease(const spec::LeaseRenewal& renewal) {
  auto call = std::make_shared<Call<v1::RenewDraftLeaseRequest, v1::RenewDraftLeaseResponse>>();
  call->context.set_deadline(After(control_deadline_));
  call->request.set_owner(renewal.owner);
  call->request.set_lease_ms(absl::ToInt64Milliseconds(renewal.lease));
  call->request.mutable_live_session_ids()->Add(renewal.live_sessions.begin(), renewal.live_sessions.end());
  stub_->async()->RenewLease(&call->context, &call->request, &call->response, [call](grpc::Status) {});
}

// ---- Target shards ---------------------------------------------------------------------------

// Reads one shard's Events stream until it ends; then tells the client and deletes itself.
class GrpcTargetClient::EventsReader : public grpc::ClientReadReactor<v1::ShardEvent> {
 public:
  EventsReader(GrpcTargetClient* client, int shard) : client_(client), shard_(shard) {
    client_->stubs_[shard]->async()->Events(&context_, &request_, this);
    StartRead(&event_);
    StartCall();
  }
  void Cancel() { context_.TryCancel(); }
  void OnReadInitialMetadataDone(bool ok) override {
    if (ok) client_->SetConnected(shard_, this);
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    client_->OnEvent(shard_, event_);
    StartRead(&event_);
  }
  void OnDone(const grpc::Status& status) override {
    client_->OnStreamEnded(shard_, this, status);
    delete this;
  }

 private:
  GrpcTargetClient* client_;
  int shard_;
  grpc::ClientContext context_;
  v1::EventsRequest request_;
  v1::ShardEvent event_;
};

GrpcTargetClient::GrpcTargetClient(std::vector<std::string> addresses, const GrpcTargetClientOptions& options)
    : addresses_(std::move(addresses)), options_(options) {
  for (size_t i = 0; i < addresses_.size(); ++i) {
    stubs_.push_back(v1::TargetShard::NewStub(
        WorkerChannel(addresses_[i], i < options_.credentials.size() ? options_.credentials[i] : nullptr)));
  }
  {
    absl::MutexLock lock(&mu_);
    readers_.assign(addresses_.size(), nullptr);
    connected_.assign(addresses_.size(), false);
  }
  for (int i = 0; i < num_shards(); ++i) Subscribe(i);
  maintainer_ = std::thread([this] { Maintain(); });
}

GrpcTargetClient::~GrpcTargetClient() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    for (EventsReader* r : readers_) {
      if (r != nullptr) r->Cancel();
    }
  }
  maintainer_.join();
  // Wait for the readers to finish (their OnDone touches this object).
  absl::MutexLock lock(&mu_);
  auto none = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return live_readers_ == 0; };
  mu_.AwaitWithTimeout(absl::Condition(&none), absl::Seconds(10));
}

void GrpcTargetClient::Subscribe(int shard) {
  absl::MutexLock lock(&mu_);
  if (stopping_ || readers_[shard] != nullptr) return;
  ++live_readers_;
  readers_[shard] = new EventsReader(this, shard);
}

void GrpcTargetClient::SetConnected(int shard, EventsReader* reader) {
  absl::MutexLock lock(&mu_);
  if (readers_[shard] == reader) connected_[shard] = true;
}

bool GrpcTargetClient::connected(int shard) const {
  absl::MutexLock lock(&mu_);
  return connected_[shard];
}

void GrpcTargetClient::OnEvent(int shard, const v1::ShardEvent& event) {
  std::optional<spec::BlockOutcome> outcome = wire::FromProto(event);
  if (outcome.has_value()) {
    const Key key{outcome->session_id, outcome->step};
    Complete(key, *std::move(outcome));
  }
  (void)shard;
}

void GrpcTargetClient::OnStreamEnded(int shard, EventsReader* reader, const grpc::Status& status) {
  std::vector<std::pair<Key, Pending>> failed;
  {
    absl::MutexLock lock(&mu_);
    --live_readers_;
    if (readers_[shard] == reader) readers_[shard] = nullptr;
    const bool was_connected = connected_[shard];
    connected_[shard] = false;
    if (stopping_) return;
    // The shard is gone (or unreachable): every block in flight may have been on it, and the
    // sessions' KV caches there are lost. Fail them all; new sessions wait for the resubscription.
    if (was_connected || !pending_.empty()) {
      for (auto& [key, p] : pending_) failed.emplace_back(key, std::move(p));
      pending_.clear();
    }
  }
  const absl::Status error = absl::UnavailableError(absl::StrCat(
      "target shard ", shard, " (", addresses_[shard], ") is unreachable: ", status.error_message()));
  for (auto& [key, p] : failed) p.done({key.first, key.second, error, std::nullopt});
}

void GrpcTargetClient::Complete(const Key& key, spec::BlockOutcome outcome) {
  std::function<void(spec::BlockOutcome)> done;
  {
    absl::MutexLock lock(&mu_);
    auto it = pending_.find(key);
    if (it == pending_.end()) return;
    done = std::move(it->second.done);
    pending_.erase(it);
  }
  done(std::move(outcome));
}

void GrpcTargetClient::Maintain() {
  while (true) {
    std::vector<int> resubscribe;
    std::vector<std::pair<Key, Pending>> expired;
    {
      absl::MutexLock lock(&mu_);
      auto stop = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_; };
      mu_.AwaitWithTimeout(absl::Condition(&stop), options_.resubscribe_interval);
      if (stopping_) return;
      for (int i = 0; i < num_shards(); ++i) {
        if (readers_[i] == nullptr) resubscribe.push_back(i);
      }
      const absl::Time now = absl::Now();
      for (auto it = pending_.begin(); it != pending_.end();) {
        if (it->second.deadline <= now) {
          expired.emplace_back(it->first, std::move(it->second));
          pending_.erase(it++);
        } else {
          ++it;
        }
      }
    }
    for (int i : resubscribe) Subscribe(i);
    for (auto& [key, p] : expired) {
      p.done({key.first, key.second,
              absl::DeadlineExceededError("the target shards did not return a verdict in time"), std::nullopt});
    }
  }
}

void GrpcTargetClient::OpenSession(const TargetSessionSpec& session, StatusCallback done) {
  v1::OpenShardSessionRequest request;
  request.set_session_id(session.session_id.value());
  request.set_capacity(static_cast<int32_t>(session.capacity));
  if (absl::Status s = wire::ToProto(session.params, request.mutable_speculation()); !s.ok()) {
    done(s);
    return;
  }
  wire::ToProto(session.target_sampling, request.mutable_target_sampling());
  std::shared_ptr<StatusJoin> join = StatusJoin::Create(num_shards(), std::move(done));
  for (int i = 0; i < num_shards(); ++i) {
    auto call = std::make_shared<Call<v1::OpenShardSessionRequest, v1::OpenShardSessionResponse>>();
    call->context.set_deadline(After(options_.control_deadline));
    call->request = request;
    const std::string who = absl::StrCat("target shard ", i, " (", addresses_[i], ")");
    stubs_[i]->async()->OpenSession(&call->context, &call->request, &call->response,
                                    [call, join, who](grpc::Status status) { join->Report(Named(status, who)); });
  }
}

void GrpcTargetClient::Verify(const spec::ShardBlock& block, std::vector<int32_t> token_ids,
                              std::function<void(spec::BlockOutcome)> done) {
  const Key key{block.session_id, block.step};
  {
    absl::MutexLock lock(&mu_);
    pending_[key] = {std::move(done), absl::Now() + options_.verify_deadline};
  }
  auto call = std::make_shared<Call<v1::ForwardRequest, v1::ForwardAck>>();
  call->context.set_deadline(After(options_.control_deadline));
  wire::ToProto(block, call->request.mutable_header());
  call->request.mutable_token_ids()->Assign(token_ids.begin(), token_ids.end());
  const std::string who = absl::StrCat("target shard 0 (", addresses_[0], ")");
  stubs_[0]->async()->Forward(&call->context, &call->request, &call->response,
                              [this, call, key, who](grpc::Status status) {
                                if (status.ok()) return;  // the verdict comes as an event
                                absl::Status s = Named(status, who);
                                if (s.code() == absl::StatusCode::kDeadlineExceeded) {
                                  s = absl::UnavailableError(s.message());
                                }
                                Complete(key, {key.first, key.second, s, std::nullopt});
                              });
}

void GrpcTargetClient::CloseSession(spec::SessionId session_id) {
  for (int i = 0; i < num_shards(); ++i) {
    auto call = std::make_shared<Call<v1::CloseShardSessionRequest, v1::CloseShardSessionResponse>>();
    call->context.set_deadline(After(options_.control_deadline));
    call->request.set_session_id(session_id.value());
    stubs_[i]->async()->CloseSession(&call->context, &call->request, &call->response, [call](grpc::Status) {});
  }
}

void GrpcTargetClient::RenewLease(const spec::LeaseRenewal& renewal) {
  for (int i = 0; i < num_shards(); ++i) {
    auto call = std::make_shared<Call<v1::RenewShardLeaseRequest, v1::RenewShardLeaseResponse>>();
    call->context.set_deadline(After(options_.control_deadline));
    call->request.set_owner(renewal.owner);
    call->request.set_lease_ms(absl::ToInt64Milliseconds(renewal.lease));
    call->request.mutable_live_session_ids()->Add(renewal.live_sessions.begin(), renewal.live_sessions.end());
    stubs_[i]->async()->RenewLease(&call->context, &call->request, &call->response, [call](grpc::Status) {});
  }
}

}  // namespace verdict::clients
