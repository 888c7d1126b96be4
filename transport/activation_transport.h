// SPDX-License-Identifier: Apache-2.0
// Moving activations between consecutive target shards. A Frame is what one shard's forward batch
// sends to the next: a small serialized header (a verdict.v1.ActivationBatch without its data; the
// transport does not look inside it) and the activation bytes. Implementations: UCX (ucp; tcp and
// shared memory locally, RDMA where the cluster has it) and in-process (tests). The gRPC fallback
// is the shard service's PushActivations RPC and lives with the service.
//
// Delivery is ordered per sender and reliable while both ends live. A receiver hands every frame,
// or the error that made one undeliverable (a malformed frame, a peer that disconnected), to its
// handler on the receiver's own thread; an error concerns that frame or peer only.
#ifndef VERDICT_TRANSPORT_ACTIVATION_TRANSPORT_H_
#define VERDICT_TRANSPORT_ACTIVATION_TRANSPORT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace verdict::transport {

struct Frame {
  std::string header;
  std::string payload;
};

// Frames larger than this are refused: by senders with kInvalidArgument, by receivers with
// kDataLoss to the handler (no correct sender produces one, so it is a malformed frame): 1 GiB,
// far above any activation batch (tokens x hidden x 4 bytes).
inline constexpr uint64_t kMaxFrameBytes = uint64_t{1} << 30;

class ActivationSender {
 public:
  virtual ~ActivationSender() = default;
  // Sends one frame; returns once the frame's memory may be reused (not when it was processed).
  // kUnavailable when the peer is gone (the message names it), kInvalidArgument for a frame over
  // kMaxFrameBytes. Thread-compatible: one thread sends at a time.
  virtual absl::Status Send(const Frame& frame) = 0;
  // The address this sender is connected to.
  virtual std::string peer() const = 0;
};

// Called on the receiver's thread with each frame, or with an error for a frame that could not be
// received (kDataLoss: malformed; kUnavailable: the sending peer disconnected mid-frame).
using FrameHandler = std::function<void(absl::StatusOr<Frame>)>;

class ActivationReceiver {
 public:
  virtual ~ActivationReceiver() = default;  // stops receiving; no handler call after it returns
  // The address senders connect to, e.g. "127.0.0.1:41235" (a port 0 request resolved).
  virtual std::string address() const = 0;
};

}  // namespace verdict::transport

#endif  // VERDICT_TRANSPORT_ACTIVATION_TRANSPORT_H_
