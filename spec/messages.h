// SPDX-License-Identifier: Apache-2.0
// The plain messages between the coordinator and the workers, as C++ values: what the wire
// messages of proto/verdict/v1 (draft_worker.proto, target_shard.proto) carry, without gRPC or
// protobuf. The worker cores consume them, the coordinator produces them, and the service adapters
// convert them to and from protobuf (clients/grpc/wire_convert.h).
#ifndef VERDICT_SPEC_MESSAGES_H_
#define VERDICT_SPEC_MESSAGES_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "spec/draft_block.h"
#include "spec/ids.h"

namespace verdict::spec {

// Draft worker: keep a prefix of the session's sequence, append tokens, propose more.
struct ProposeRequest {
  DraftSessionId session_id;
  uint64_t step = 0;
  int64_t keep_length = 0;             // keep this prefix of the session's sequence
  std::vector<int32_t> append_tokens;  // then append these
  int64_t num_tokens = 0;              // then propose this many (1..kMaxDraftTokens)
};

struct Proposal {
  uint64_t step = 0;
  DraftBlock block;
  int64_t sequence_length = 0;  // after the proposal joined the sequence
};

// Target shards: one session's block as a shard sees it.
struct ShardBlock {
  SessionId session_id;
  uint64_t step = 0;            // must exceed the session's previous step
  int64_t start_position = 0;   // <= the session's cached length (earlier positions are kept)
  int64_t num_tokens = 0;       // >= 1
  // Last shard: verify the block's last draft.tokens.size() + 1 positions ([x_{n-1}, d_1..d_k]);
  // with no draft tokens the verdict is the target's own next token. false: prefill only.
  bool verify = false;
  DraftBlock draft;
};

// What happened to one block that ends at a shard (it failed there, or that is the last shard).
struct BlockOutcome {
  SessionId session_id;
  uint64_t step = 0;
  absl::Status status;
  std::optional<Verdict> verdict;  // last shard, verify blocks that succeeded
};

// A coordinator's lease renewal for one worker (workers/session_leases.h): its incarnation, how
// long the lease lasts from now, and the ids of the sessions it still holds there.
struct LeaseRenewal {
  uint32_t owner = 0;
  absl::Duration lease;
  std::vector<uint64_t> live_sessions;
};

}  // namespace verdict::spec

#endif  // VERDICT_SPEC_MESSAGES_H_
