// SPDX-License-Identifier: Apache-2.0
// A sender in a process of its own, for ucx_transport_multiproc_test: connects to a receiver,
// sends frame 0 (small, the "I am connected" signal), then frames 1..N with large payloads, and
// exits. The test SIGKILLs it part-way. All frames come from testing::MakeFrame(kPeerSender, i, ...).
//
// Usage: ucx_transport_test_peer ADDRESS OPTIONS(tcp|shm|shm+peer) PAYLOAD_BYTES FRAMES
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/numbers.h"
#include "transport/testing/ucx_test_util.h"
#include "transport/ucx_transport.h"

namespace {
constexpr int kPeerSender = 7;
}

int main(int argc, char** argv) {
  // A test that dies before killing us must not leave us running: end after two minutes anyway.
  alarm(120);
  uint64_t payload_bytes = 0;
  int frames = 0;
  if (argc != 5 || !absl::SimpleAtoi(argv[3], &payload_bytes) || !absl::SimpleAtoi(argv[4], &frames)) {
    std::fprintf(stderr, "usage: %s ADDRESS tcp|shm|shm+peer PAYLOAD_BYTES FRAMES\n", argv[0]);
    return 1;
  }
  using verdict::transport::testing::MakeFrame;
  auto sender = verdict::transport::ConnectUcx(verdict::transport::testing::OptionsByName(argv[2]), argv[1]);
  if (!sender.ok()) {
    std::fprintf(stderr, "connect: %s\n", sender.status().ToString().c_str());
    return 2;
  }
  for (int i = 0; i <= frames; ++i) {
    const absl::Status sent = (*sender)->Send(MakeFrame(kPeerSender, i, i == 0 ? 1000 : payload_bytes));
    if (!sent.ok()) {
      std::fprintf(stderr, "send %d: %s\n", i, sent.ToString().c_str());
      return 3;
    }
  }
  return 0;
}
