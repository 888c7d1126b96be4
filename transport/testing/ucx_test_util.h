// SPDX-License-Identifier: Apache-2.0
// Helpers shared by the transport tests and the test peer binary: frames with checkable content,
// a handler that collects what a receiver delivers (waits are bounded), and the UCX option sets
// the tests run under. Thread-safe where noted.
#ifndef VERDICT_TRANSPORT_TESTING_UCX_TEST_UTIL_H_
#define VERDICT_TRANSPORT_TESTING_UCX_TEST_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "transport/activation_transport.h"
#include "transport/ucx_transport.h"

namespace verdict::transport::testing {

// A frame whose header names (sender, index, payload size) and whose payload is a pseudo-random
// function of them, so a receiver can check it came through intact and in order.
Frame MakeFrame(int sender, int index, size_t payload_bytes, size_t header_bytes = 0);

struct FrameId {
  int sender = -1;
  int index = -1;
};

// Parses a MakeFrame header and checks the payload. kDataLoss describing the first difference.
absl::StatusOr<FrameId> CheckFrame(const Frame& frame);

// Collects everything a handler receives. Thread-safe.
class FrameCollector {
 public:
  FrameHandler Handler();
  // True once at least `count` items have arrived; false if `timeout` passes first.
  bool WaitForCount(size_t count, absl::Duration timeout);
  // True once `done(items so far)` holds; false if `timeout` passes first. `done` runs under the
  // collector's lock: it must not call back into the collector.
  bool WaitUntil(const std::function<bool(const std::vector<absl::StatusOr<Frame>>&)>& done, absl::Duration timeout);
  // A copy of everything so far, in arrival order.
  std::vector<absl::StatusOr<Frame>> Items();
  size_t count();

 private:
  absl::Mutex mu_;
  std::vector<absl::StatusOr<Frame>> items_ ABSL_GUARDED_BY(mu_);
};

// tcp on loopback with peer failure detection (the default production setting).
UcxOptions TcpOptions();
// Shared memory (sysv/posix messages, cma rendezvous; tcp for wire-up) without peer failure
// detection: the only way UCX 1.13 uses shared memory.
UcxOptions SharedMemoryOptions();
// Shared-memory transports listed but peer failure detection on: UCX falls back to tcp.
UcxOptions SharedMemoryWithPeerDetectionOptions();
// "tcp", "shm", "shm+peer" -> the options above.
UcxOptions OptionsByName(const std::string& name);

}  // namespace verdict::transport::testing

#endif  // VERDICT_TRANSPORT_TESTING_UCX_TEST_UTIL_H_
