// SPDX-License-Identifier: Apache-2.0
// An in-process ActivationSender/ActivationReceiver pair for unit tests of the modules above the
// transport (workers, services): no network, same contract as UCX. Send copies the frame into a
// bounded queue (blocking while it is full, like a network send waiting for the peer); the
// receiver's own thread hands frames to the handler in Send order. Destroying the receiver closes
// the channel: frames still queued are dropped and Send returns kUnavailable from then on.
//
// Thread-safety: as ActivationSender/ActivationReceiver (one thread sends at a time; the handler
// runs on the receiver's thread). The two halves may be destroyed in either order, from any thread.
#ifndef VERDICT_TRANSPORT_IN_PROCESS_TRANSPORT_H_
#define VERDICT_TRANSPORT_IN_PROCESS_TRANSPORT_H_

#include <cstdint>
#include <memory>

#include "absl/time/time.h"
#include "transport/activation_transport.h"

namespace verdict::transport {

struct InProcessOptions {
  // Frames larger than this (header + payload) are refused with kInvalidArgument. Tests lower it
  // to exercise the limit without allocating a gigabyte.
  uint64_t max_frame_bytes = kMaxFrameBytes;
  // Frames queued but not yet handed to the handler; Send blocks while the queue is full.
  int64_t max_queued_frames = 64;
  // How long Send waits for queue space before giving up with kDeadlineExceeded (the receiver is
  // alive but its handler does not keep up; the channel stays usable).
  absl::Duration send_timeout = absl::Seconds(60);
};

struct InProcessChannel {
  std::unique_ptr<ActivationSender> sender;
  std::unique_ptr<ActivationReceiver> receiver;
};

// Makes a connected pair. `handler` is called on the receiver's thread with every frame, in Send
// order; it is never called with an error (nothing can be malformed or lost in one process).
// Both halves report the same address, "inprocess:<n>" with n unique in the process.
InProcessChannel MakeInProcessChannel(FrameHandler handler, const InProcessOptions& options = {});

}  // namespace verdict::transport

#endif  // VERDICT_TRANSPORT_IN_PROCESS_TRANSPORT_H_
