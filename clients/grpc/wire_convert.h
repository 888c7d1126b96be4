// SPDX-License-Identifier: Apache-2.0
// Conversions between the wire contract (proto/verdict/v1) and the plain C++ values of the cores
// (engine::SamplingParams, judge::DraftBlock / Verdict / VerificationConfig, workers::ShardBlock),
// and between absl::Status and grpc::Status (the codes are the same numbers). Every conversion
// from the wire validates what it reads: a hostile or broken message becomes kInvalidArgument,
// never a crash.
#ifndef VERDICT_CLIENTS_GRPC_WIRE_CONVERT_H_
#define VERDICT_CLIENTS_GRPC_WIRE_CONVERT_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/sampler.h"
#include "grpcpp/support/status.h"
#include "judge/verification.h"
#include "verdict/v1/speculation.pb.h"
#include "verdict/v1/target_shard.pb.h"
#include "workers/messages.h"

namespace verdict::wire {

grpc::Status ToGrpc(const absl::Status& status);
absl::Status FromGrpc(const grpc::Status& status);

engine::SamplingParams FromProto(const v1::SamplingParams& p);
void ToProto(const engine::SamplingParams& s, v1::SamplingParams* p);

// Validates sizes and ids against `vocab_size` (> 0) when given.
absl::StatusOr<judge::DraftBlock> FromProto(const v1::DraftBlock& p, int64_t vocab_size = 0);
void ToProto(const judge::DraftBlock& b, v1::DraftBlock* p);

judge::Verdict FromProto(const v1::BlockVerdict& p);
void ToProto(const judge::Verdict& v, v1::BlockVerdict* p);

absl::StatusOr<workers::ShardBlock> FromProto(const v1::BlockHeader& p, int64_t vocab_size = 0);
void ToProto(const workers::ShardBlock& b, v1::BlockHeader* p);

// The policy a request or a shard session names, with its thresholds, as a verification config
// (judge::PolicyConfig semantics: EXACT is greedy or sampled by `sampling`). kInvalidArgument for
// an unknown policy or out-of-range thresholds.
struct PolicyParams {
  v1::VerificationPolicy policy = v1::VERIFICATION_POLICY_EXACT;
  std::optional<float> judge_threshold;
  std::optional<float> lossy_threshold;
  std::optional<float> typical_delta;
};
absl::StatusOr<judge::VerificationConfig> ToVerificationConfig(const PolicyParams& params,
                                                               const engine::SamplingParams& sampling,
                                                               float default_judge_threshold);
// The inverse for the named policies (kInvalidArgument for token-mask, oracle or KL rules, which
// have no wire form).
absl::StatusOr<PolicyParams> FromVerificationConfig(const judge::VerificationConfig& config);
std::string PolicyWireName(v1::VerificationPolicy policy);

}  // namespace verdict::wire

#endif  // VERDICT_CLIENTS_GRPC_WIRE_CONVERT_H_
