// SPDX-License-Identifier: Apache-2.0
#include "services/shard/activation_forwarder.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "services/shard/activation_codec.h"
#include "clients/grpc/wire_convert.h"

namespace verdict::services {

ActivationForwarder::ActivationForwarder(const ForwarderOptions& options,
                                         std::function<void(spec::BlockOutcome)> on_failure)
    : options_(options), on_failure_(std::move(on_failure)) {
  thread_ = std::thread([this] { Run(); });
}

ActivationForwarder::~ActivationForwarder() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

void ActivationForwarder::Send(workers::ShardBatch batch) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(batch));
}

ForwarderStats ActivationForwarder::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

absl::Status ActivationForwarder::Deliver(const workers::ShardBatch& batch, int64_t* bytes) {
  EncodedActivations encoded = EncodeActivations(batch, options_.from_shard, options_.hidden_size, options_.dtype);
  *bytes = static_cast<int64_t>(encoded.payload.size());
  if (options_.use_ucx) {
    if (ucx_ == nullptr) {
      absl::StatusOr<std::unique_ptr<transport::ActivationSender>> sender =
          transport::ConnectUcx(options_.ucx, options_.next_data_address);
      if (!sender.ok()) return sender.status();
      ucx_ = std::move(*sender);
    }
    transport::Frame frame{encoded.header.SerializeAsString(), std::move(encoded.payload)};
    absl::Status status = ucx_->Send(frame);
    if (!status.ok()) {
      // The connection broke (e.g. the next shard restarted): reconnect once and resend. A block
      // that did arrive before the break is refused by the next shard as a repeated step.
      ucx_.reset();
      absl::StatusOr<std::unique_ptr<transport::ActivationSender>> sender =
          transport::ConnectUcx(options_.ucx, options_.next_data_address);
      if (!sender.ok()) return status;
      ucx_ = std::move(*sender);
      status = ucx_->Send(frame);
      if (!status.ok()) ucx_.reset();
    }
    return status;
  }
  if (stub_ == nullptr) {
    stub_ = v1::TargetShard::NewStub(
        grpc::CreateChannel(options_.next_grpc_address, options_.grpc_credentials != nullptr
                                                             ? options_.grpc_credentials
                                                             : grpc::InsecureChannelCredentials()));
  }
  v1::ActivationBatch message = std::move(encoded.header);
  message.set_data(std::move(encoded.payload));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(options_.rpc_deadline));
  v1::ForwardAck ack;
  return wire::FromGrpc(stub_->PushActivations(&context, message, &ack));
}

void ActivationForwarder::Run() {
  auto has_work = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_ || !queue_.empty(); };
  while (true) {
    workers::ShardBatch batch;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(&has_work));
      if (queue_.empty()) return;  // stopping, all sent
      batch = std::move(queue_.front());
      queue_.pop_front();
    }
    const auto start = std::chrono::steady_clock::now();
    int64_t bytes = 0;
    const absl::Status status = Deliver(batch, &bytes);
    const int64_t micros =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count();
    {
      absl::MutexLock lock(&mu_);
      ++stats_.batches;
      stats_.bytes += bytes;
      stats_.send_micros_total += micros;
      if (!status.ok()) ++stats_.failures;
    }
    if (!status.ok() && on_failure_) {
      const std::string where = options_.use_ucx ? options_.next_data_address : options_.next_grpc_address;
      const absl::Status failed = absl::UnavailableError(absl::StrCat(
          "target shard ", options_.from_shard + 1, " (", where, ") is unreachable: ", status.message()));
      for (const spec::ShardBlock& b : batch.blocks) on_failure_({b.session_id, b.step, failed, std::nullopt});
    }
  }
}

}  // namespace verdict::services
