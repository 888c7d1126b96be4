// SPDX-License-Identifier: Apache-2.0
#include "clients/grpc/wire_convert.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace verdict::wire {
namespace {

absl::Status CheckId(int32_t id, int64_t vocab_size, absl::string_view what) {
  if (id < 0 || (vocab_size > 0 && id >= vocab_size)) {
    return absl::InvalidArgumentError(absl::StrCat(what, " token id ", id, " is outside the vocabulary",
                                                   vocab_size > 0 ? absl::StrCat(" of ", vocab_size) : ""));
  }
  return absl::OkStatus();
}

absl::Status CheckProbability(float v, absl::string_view what) {
  if (!(v >= 0.0f && v <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat(what, " must be in [0, 1], got ", v));
  }
  return absl::OkStatus();
}

}  // namespace

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

engine::SamplingParams FromProto(const v1::SamplingParams& p) {
  engine::SamplingParams s;
  s.temperature = p.temperature();
  s.top_k = p.top_k();
  s.top_p = p.top_p() == 0.0f ? 1.0f : p.top_p();
  s.seed = p.seed();
  return s;
}

void ToProto(const engine::SamplingParams& s, v1::SamplingParams* p) {
  p->set_temperature(s.temperature);
  p->set_top_k(static_cast<int32_t>(s.top_k));
  p->set_top_p(s.top_p);
  p->set_seed(s.seed);
}

absl::StatusOr<judge::DraftBlock> FromProto(const v1::DraftBlock& p, int64_t vocab_size) {
  if (p.tokens_size() > judge::kMaxDraftTokens) {
    return absl::InvalidArgumentError(absl::StrCat("a draft block of ", p.tokens_size(),
                                                   " tokens exceeds the maximum of ", judge::kMaxDraftTokens));
  }
  if (p.logprobs_size() != 0 && p.logprobs_size() != p.tokens_size()) {
    return absl::InvalidArgumentError(absl::StrCat("a draft block of ", p.tokens_size(), " tokens has ",
                                                   p.logprobs_size(), " log-probabilities"));
  }
  if (p.proposals_size() != 0 && p.proposals_size() != p.tokens_size()) {
    return absl::InvalidArgumentError(absl::StrCat("a draft block of ", p.tokens_size(), " tokens has ",
                                                   p.proposals_size(), " proposal distributions"));
  }
  judge::DraftBlock b;
  for (int32_t t : p.tokens()) {
    VERDICT_RETURN_IF_ERROR(CheckId(t, vocab_size, "draft"));
    b.tokens.push_back(t);
  }
  b.logprobs.assign(p.logprobs().begin(), p.logprobs().end());
  for (const v1::TokenDistribution& d : p.proposals()) {
    if (d.token_ids_size() != d.probs_size()) {
      return absl::InvalidArgumentError("a proposal distribution has different numbers of ids and probabilities");
    }
    if (vocab_size > 0 && d.token_ids_size() > vocab_size) {
      return absl::InvalidArgumentError("a proposal distribution is larger than the vocabulary");
    }
    judge::DraftDistribution q;
    for (int i = 0; i < d.token_ids_size(); ++i) {
      VERDICT_RETURN_IF_ERROR(CheckId(d.token_ids(i), vocab_size, "proposal"));
      VERDICT_RETURN_IF_ERROR(CheckProbability(d.probs(i), "a proposal probability"));
      if (i > 0 && d.token_ids(i) <= d.token_ids(i - 1)) {
        return absl::InvalidArgumentError(
            "a proposal distribution's token ids must be strictly ascending");
      }
      q.ids.push_back(d.token_ids(i));
      q.probs.push_back(d.probs(i));
    }
    b.proposals.push_back(std::move(q));
  }
  return b;
}

void ToProto(const judge::DraftBlock& b, v1::DraftBlock* p) {
  p->mutable_tokens()->Assign(b.tokens.begin(), b.tokens.end());
  p->mutable_logprobs()->Assign(b.logprobs.begin(), b.logprobs.end());
  for (const judge::DraftDistribution& q : b.proposals) {
    v1::TokenDistribution* d = p->add_proposals();
    d->mutable_token_ids()->Assign(q.ids.begin(), q.ids.end());
    d->mutable_probs()->Assign(q.probs.begin(), q.probs.end());
  }
}

judge::Verdict FromProto(const v1::BlockVerdict& p) {
  judge::Verdict v;
  v.num_accepted = p.num_accepted();
  v.next_token = p.next_token();
  for (int r : p.reasons()) {
    switch (r) {
      case v1::ACCEPT_REASON_EXACT: v.reasons.push_back(judge::AcceptReason::kExact); break;
      case v1::ACCEPT_REASON_JUDGE: v.reasons.push_back(judge::AcceptReason::kJudge); break;
      case v1::ACCEPT_REASON_LOSSY: v.reasons.push_back(judge::AcceptReason::kLossy); break;
      case v1::ACCEPT_REASON_REJECTED: v.reasons.push_back(judge::AcceptReason::kRejected); break;
      default: v.reasons.push_back(judge::AcceptReason::kNotReached); break;
    }
  }
  v.judge_scores.assign(p.judge_scores().begin(), p.judge_scores().end());
  v.shadow_num_accepted = p.shadow_num_accepted();
  return v;
}

void ToProto(const judge::Verdict& v, v1::BlockVerdict* p) {
  p->set_num_accepted(v.num_accepted);
  p->set_next_token(v.next_token);
  for (judge::AcceptReason r : v.reasons) {
    switch (r) {
      case judge::AcceptReason::kExact: p->add_reasons(v1::ACCEPT_REASON_EXACT); break;
      case judge::AcceptReason::kJudge: p->add_reasons(v1::ACCEPT_REASON_JUDGE); break;
      case judge::AcceptReason::kLossy: p->add_reasons(v1::ACCEPT_REASON_LOSSY); break;
      case judge::AcceptReason::kRejected: p->add_reasons(v1::ACCEPT_REASON_REJECTED); break;
      case judge::AcceptReason::kNotReached: p->add_reasons(v1::ACCEPT_REASON_NOT_REACHED); break;
    }
  }
  p->mutable_judge_scores()->Assign(v.judge_scores.begin(), v.judge_scores.end());
  p->set_shadow_num_accepted(v.shadow_num_accepted);
}

absl::StatusOr<workers::ShardBlock> FromProto(const v1::BlockHeader& p, int64_t vocab_size) {
  workers::ShardBlock b;
  b.session_id = p.session_id();
  b.step = p.step();
  b.start_position = p.start_position();
  b.num_tokens = p.num_tokens();
  b.verify = p.verify();
  if (b.num_tokens < 1) return absl::InvalidArgumentError(absl::StrCat("a block of ", b.num_tokens, " positions"));
  if (b.start_position < 0) return absl::InvalidArgumentError("a block at a negative position");
  VERDICT_ASSIGN_OR_RETURN(b.draft, FromProto(p.draft(), vocab_size));
  return b;
}

void ToProto(const workers::ShardBlock& b, v1::BlockHeader* p) {
  p->set_session_id(b.session_id);
  p->set_step(b.step);
  p->set_start_position(static_cast<int32_t>(b.start_position));
  p->set_num_tokens(static_cast<int32_t>(b.num_tokens));
  p->set_verify(b.verify);
  ToProto(b.draft, p->mutable_draft());
}

std::string PolicyWireName(v1::VerificationPolicy policy) {
  switch (policy) {
    case v1::VERIFICATION_POLICY_UNSPECIFIED: return "unspecified";
    case v1::VERIFICATION_POLICY_EXACT: return "exact";
    case v1::VERIFICATION_POLICY_JUDGE: return "judge";
    case v1::VERIFICATION_POLICY_JUDGE_SHADOW: return "judge-shadow";
    case v1::VERIFICATION_POLICY_LOSSY_PROB: return "lossy-prob";
    case v1::VERIFICATION_POLICY_LOSSY_TYPICAL: return "lossy-typical";
    default: return absl::StrCat("policy ", static_cast<int>(policy));
  }
}

absl::StatusOr<judge::VerificationConfig> ToVerificationConfig(const PolicyParams& params,
                                                               const engine::SamplingParams& sampling,
                                                               float default_judge_threshold) {
  std::string name;
  switch (params.policy) {
    case v1::VERIFICATION_POLICY_UNSPECIFIED:
    case v1::VERIFICATION_POLICY_EXACT: name = sampling.greedy() ? "greedy" : "sampled"; break;
    case v1::VERIFICATION_POLICY_JUDGE: name = "judge"; break;
    case v1::VERIFICATION_POLICY_JUDGE_SHADOW: name = "judge-shadow"; break;
    case v1::VERIFICATION_POLICY_LOSSY_PROB: name = "lossy-prob"; break;
    case v1::VERIFICATION_POLICY_LOSSY_TYPICAL: name = "lossy-typical"; break;
    default:
      return absl::InvalidArgumentError(absl::StrCat("unknown verification policy ", static_cast<int>(params.policy)));
  }
  VERDICT_ASSIGN_OR_RETURN(judge::VerificationConfig config, judge::PolicyConfig(name, sampling));
  config.judge_threshold = params.judge_threshold.value_or(default_judge_threshold);
  if (params.judge_threshold.has_value()) {
    VERDICT_RETURN_IF_ERROR(CheckProbability(*params.judge_threshold, "the judge threshold"));
  }
  if (params.lossy_threshold.has_value()) {
    if (!std::isfinite(*params.lossy_threshold) || *params.lossy_threshold < 0) {
      return absl::InvalidArgumentError(absl::StrCat("the lossy threshold must be >= 0, got ", *params.lossy_threshold));
    }
    config.lossy_threshold = *params.lossy_threshold;
  }
  if (params.typical_delta.has_value()) {
    if (!std::isfinite(*params.typical_delta) || *params.typical_delta < 0) {
      return absl::InvalidArgumentError(absl::StrCat("the typical delta must be >= 0, got ", *params.typical_delta));
    }
    config.typical_delta = *params.typical_delta;
  }
  VERDICT_RETURN_IF_ERROR(judge::ValidateVerificationConfig(config));
  return config;
}

absl::StatusOr<PolicyParams> FromVerificationConfig(const judge::VerificationConfig& config) {
  PolicyParams p;
  if (config.judge == judge::JudgeMode::kOn) {
    p.policy = v1::VERIFICATION_POLICY_JUDGE;
  } else if (config.judge == judge::JudgeMode::kShadow) {
    p.policy = v1::VERIFICATION_POLICY_JUDGE_SHADOW;
  } else if (config.lossy == judge::LossyRule::kTargetProb) {
    p.policy = v1::VERIFICATION_POLICY_LOSSY_PROB;
  } else if (config.lossy == judge::LossyRule::kTypical) {
    p.policy = v1::VERIFICATION_POLICY_LOSSY_TYPICAL;
  } else if (config.lossy == judge::LossyRule::kNone) {
    p.policy = v1::VERIFICATION_POLICY_EXACT;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("policy ", judge::PolicyName(config), " has no wire form"));
  }
  if (config.judge != judge::JudgeMode::kOff && config.lossy != judge::LossyRule::kNone) {
    return absl::InvalidArgumentError("a judge combined with a lossy rule has no wire form");
  }
  p.judge_threshold = config.judge_threshold;
  p.lossy_threshold = config.lossy_threshold;
  p.typical_delta = config.typical_delta;
  return p;
}

}  // namespace verdict::wire
