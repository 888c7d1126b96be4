// SPDX-License-Identifier: Apache-2.0
// Conversions between the wire contract (proto/verdict/v1) and the plain C++ values of the cores
// (spec::SamplingParams, spec::DraftBlock / Verdict / VerificationConfig, spec::ShardBlock),
// and between absl::Status and grpc::Status (the codes are the same numbers). Every conversion
// from the wire validates what it reads: a hostile or broken message becomes kInvalidArgument,
// never a crash.
#ifndef VERDICT_CLIENTS_GRPC_WIRE_CONVERT_H_
#define VERDICT_CLIENTS_GRPC_WIRE_CONVERT_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/support/status.h"
#include "spec/draft_block.h"
#include "spec/messages.h"
#include "spec/sampling_params.h"
#include "spec/speculation_params.h"
#include "spec/speculation_stats.h"
#include "verdict/v1/draft_worker.pb.h"
#include "verdict/v1/speculation.pb.h"
#include "verdict/v1/target_shard.pb.h"

namespace verdict::wire {

grpc::Status ToGrpc(const absl::Status& status);
absl::Status FromGrpc(const grpc::Status& status);

spec::SamplingParams FromProto(const v1::SamplingParams& p);
void ToProto(const spec::SamplingParams& s, v1::SamplingParams* p);

// Validates sizes and ids against `vocab_size` (> 0) when given.
absl::StatusOr<spec::DraftBlock> FromProto(const v1::DraftBlock& p, int64_t vocab_size = 0);
void ToProto(const spec::DraftBlock& b, v1::DraftBlock* p);

spec::Verdict FromProto(const v1::BlockVerdict& p);
void ToProto(const spec::Verdict& v, v1::BlockVerdict* p);

absl::StatusOr<spec::ShardBlock> FromProto(const v1::BlockHeader& p, int64_t vocab_size = 0);
void ToProto(const spec::ShardBlock& b, v1::BlockHeader* p);

// Policies. VERIFICATION_POLICY_UNSPECIFIED reads as `unspecified`; an unknown number is
// kInvalidArgument. A policy without a wire form (spec::HasWireForm) is kInvalidArgument too.
absl::StatusOr<spec::Policy> FromProto(v1::VerificationPolicy policy, spec::Policy unspecified);
absl::StatusOr<v1::VerificationPolicy> ToProto(spec::Policy policy);

// A request's speculation settings, with the server's defaults for what it leaves unset (policy
// UNSPECIFIED, draft_window 0, adaptive bounds 0; an adaptive window's start is clamped into its
// bounds). kInvalidArgument for an unknown policy, negative windows or adaptive bounds out of
// order (min above max); the values themselves are checked by spec::ValidateSpeculationParams.
struct SpeculationDefaults {
  spec::Policy policy = spec::Policy::kExact;
  int64_t draft_window = 8;
};
absl::StatusOr<spec::SpeculationParams> FromProto(const v1::SpeculationParams& p,
                                                  const SpeculationDefaults& defaults);
// kInvalidArgument for a policy without a wire form.
absl::Status ToProto(const spec::SpeculationParams& s, v1::SpeculationParams* p);

// A draft worker's Propose request as the worker core takes it (checked there: keep_length,
// num_tokens and ids against the session).
spec::ProposeRequest FromProto(const v1::ProposeRequest& p);

// What a shard's event says about one block: a verdict (status OK) or the shard's error for it.
// nullopt for an event with neither.
std::optional<spec::BlockOutcome> FromProto(const v1::ShardEvent& event);

spec::SpeculationStats FromProto(const v1::SpeculationStats& p);
void ToProto(const spec::SpeculationStats& s, v1::SpeculationStats* p);

}  // namespace verdict::wire

#endif  // VERDICT_CLIENTS_GRPC_WIRE_CONVERT_H_
