// SPDX-License-Identifier: Apache-2.0
#include "clients/grpc/wire_convert.h"

#include <algorithm>
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

spec::SamplingParams FromProto(const v1::SamplingParams& p) {
  spec::SamplingParams s;
  s.temperature = p.temperature();
  s.top_k = p.top_k();
  s.top_p = p.top_p() == 0.0f ? 1.0f : p.top_p();
  s.seed = p.seed();
  return s;
}

void ToProto(const spec::SamplingParams& s, v1::SamplingParams* p) {
  p->set_temperature(s.temperature);
  p->set_top_k(static_cast<int32_t>(s.top_k));
  p->set_top_p(s.top_p);
  p->set_seed(s.seed);
}

absl::StatusOr<spec::DraftBlock> FromProto(const v1::DraftBlock& p, int64_t vocab_size) {
  if (p.tokens_size() > spec::kMaxDraftTokens) {
    return absl::InvalidArgumentError(absl::StrCat("a draft block of ", p.tokens_size(),
                                                   " tokens exceeds the maximum of ", spec::kMaxDraftTokens));
  }
  if (p.logprobs_size() != 0 && p.logprobs_size() != p.tokens_size()) {
    return absl::InvalidArgumentError(absl::StrCat("a draft block of ", p.tokens_size(), " tokens has ",
                                                   p.logprobs_size(), " log-probabilities"));
  }
  if (p.proposals_size() != 0 && p.proposals_size() != p.tokens_size()) {
    return absl::InvalidArgumentError(absl::StrCat("a draft block of ", p.tokens_size(), " tokens has ",
                                                   p.proposals_size(), " proposal distributions"));
  }
  spec::DraftBlock b;
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
    spec::DraftDistribution q;
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

void ToProto(const spec::DraftBlock& b, v1::DraftBlock* p) {
  p->mutable_tokens()->Assign(b.tokens.begin(), b.tokens.end());
  p->mutable_logprobs()->Assign(b.logprobs.begin(), b.logprobs.end());
  for (const spec::DraftDistribution& q : b.proposals) {
    v1::TokenDistribution* d = p->add_proposals();
    d->mutable_token_ids()->Assign(q.ids.begin(), q.ids.end());
    d->mutable_probs()->Assign(q.probs.begin(), q.probs.end());
  }
}

spec::Verdict FromProto(const v1::BlockVerdict& p) {
  spec::Verdict v;
  v.num_accepted = p.num_accepted();
  v.next_token = p.next_token();
  for (int r : p.reasons()) {
    switch (r) {
      case v1::ACCEPT_REASON_EXACT: v.reasons.push_back(spec::AcceptReason::kExact); break;
      case v1::ACCEPT_REASON_JUDGE: v.reasons.push_back(spec::AcceptReason::kJudge); break;
      case v1::ACCEPT_REASON_LOSSY: v.reasons.push_back(spec::AcceptReason::kLossy); break;
      case v1::ACCEPT_REASON_REJECTED: v.reasons.push_back(spec::AcceptReason::kRejected); break;
      default: v.reasons.push_back(spec::AcceptReason::kNotReached); break;
    }
  }
  v.judge_scores.assign(p.judge_scores().begin(), p.judge_scores().end());
  v.shadow_num_accepted = p.shadow_num_accepted();
  v.shadow_judge_only = p.shadow_judge_only();
  v.shadow_exact_only = p.shadow_exact_only();
  v.shadow_both = p.shadow_both();
  v.judge_head = p.judge_head();
  return v;
}

void ToProto(const spec::Verdict& v, v1::BlockVerdict* p) {
  p->set_num_accepted(v.num_accepted);
  p->set_next_token(v.next_token);
  for (spec::AcceptReason r : v.reasons) {
    switch (r) {
      case spec::AcceptReason::kExact: p->add_reasons(v1::ACCEPT_REASON_EXACT); break;
      case spec::AcceptReason::kJudge: p->add_reasons(v1::ACCEPT_REASON_JUDGE); break;
      case spec::AcceptReason::kLossy: p->add_reasons(v1::ACCEPT_REASON_LOSSY); break;
      case spec::AcceptReason::kRejected: p->add_reasons(v1::ACCEPT_REASON_REJECTED); break;
      case spec::AcceptReason::kNotReached: p->add_reasons(v1::ACCEPT_REASON_NOT_REACHED); break;
    }
  }
  p->mutable_judge_scores()->Assign(v.judge_scores.begin(), v.judge_scores.end());
  p->set_shadow_num_accepted(v.shadow_num_accepted);
  p->set_shadow_judge_only(v.shadow_judge_only);
  p->set_shadow_exact_only(v.shadow_exact_only);
  p->set_shadow_both(v.shadow_both);
  p->set_judge_head(v.judge_head);
}

absl::StatusOr<spec::ShardBlock> FromProto(const v1::BlockHeader& p, int64_t vocab_size) {
  spec::ShardBlock b;
  b.session_id = spec::SessionId(p.session_id());
  b.step = p.step();
  b.start_position = p.start_position();
  b.num_tokens = p.num_tokens();
  b.verify = p.verify();
  if (b.num_tokens < 1) return absl::InvalidArgumentError(absl::StrCat("a block of ", b.num_tokens, " positions"));
  if (b.start_position < 0) return absl::InvalidArgumentError("a block at a negative position");
  VERDICT_ASSIGN_OR_RETURN(b.draft, FromProto(p.draft(), vocab_size));
  return b;
}

void ToProto(const spec::ShardBlock& b, v1::BlockHeader* p) {
  p->set_session_id(b.session_id.value());
  p->set_step(b.step);
  p->set_start_position(static_cast<int32_t>(b.start_position));
  p->set_num_tokens(static_cast<int32_t>(b.num_tokens));
  p->set_verify(b.verify);
  ToProto(b.draft, p->mutable_draft());
}

absl::StatusOr<spec::Policy> FromProto(v1::VerificationPolicy policy, spec::Policy unspecified) {
  switch (policy) {
    case v1::VERIFICATION_POLICY_UNSPECIFIED: return unspecified;
    case v1::VERIFICATION_POLICY_EXACT: return spec::Policy::kExact;
    case v1::VERIFICATION_POLICY_JUDGE: return spec::Policy::kJudge;
    case v1::VERIFICATION_POLICY_JUDGE_SHADOW: return spec::Policy::kJudgeShadow;
    case v1::VERIFICATION_POLICY_LOSSY_PROB: return spec::Policy::kLossyProb;
    case v1::VERIFICATION_POLICY_LOSSY_TYPICAL: return spec::Policy::kLossyTypical;
    default:
      return absl::InvalidArgumentError(absl::StrCat("unknown verification policy ", static_cast<int>(policy)));
  }
}

absl::StatusOr<v1::VerificationPolicy> ToProto(spec::Policy policy) {
  switch (policy) {
    case spec::Policy::kExact: return v1::VERIFICATION_POLICY_EXACT;
    case spec::Policy::kJudge: return v1::VERIFICATION_POLICY_JUDGE;
    case spec::Policy::kJudgeShadow: return v1::VERIFICATION_POLICY_JUDGE_SHADOW;
    case spec::Policy::kLossyProb: return v1::VERIFICATION_POLICY_LOSSY_PROB;
    case spec::Policy::kLossyTypical: return v1::VERIFICATION_POLICY_LOSSY_TYPICAL;
    case spec::Policy::kLossyKl: break;
  }
  return absl::InvalidArgumentError(absl::StrCat("policy ", spec::PolicyName(policy), " has no wire form"));
}

absl::StatusOr<spec::SpeculationParams> FromProto(const v1::SpeculationParams& p,
                                                  const SpeculationDefaults& defaults) {
  if (p.draft_window() < 0 || p.min_window() < 0 || p.max_window() < 0) {
    return absl::InvalidArgumentError("draft windows must be positive");
  }
  spec::SpeculationParams s;
  VERDICT_ASSIGN_OR_RETURN(s.policy, FromProto(p.policy(), defaults.policy));
  if (p.has_judge_threshold()) s.judge_threshold = p.judge_threshold();
  if (p.has_lossy_threshold()) s.lossy_threshold = p.lossy_threshold();
  if (p.has_typical_delta()) s.typical_delta = p.typical_delta();
  s.window.k = p.draft_window() > 0 ? p.draft_window() : defaults.draft_window;
  s.window.adaptive = p.adaptive_window();
  if (p.adaptive_window()) {
    if (p.min_window() > 0) s.window.min_k = p.min_window();  // else DraftWindowOptions' bounds
    if (p.max_window() > 0) s.window.max_k = p.max_window();
    // std::clamp needs ordered bounds (undefined behaviour otherwise).
    if (s.window.min_k > s.window.max_k) {
      return absl::InvalidArgumentError(absl::StrCat("adaptive window bounds must satisfy min (", s.window.min_k,
                                                     ") <= max (", s.window.max_k, ")"));
    }
    s.window.k = std::clamp<int64_t>(s.window.k, s.window.min_k, s.window.max_k);
  }
  s.speculate = !p.disable_speculation();
  return s;
}

absl::Status ToProto(const spec::SpeculationParams& s, v1::SpeculationParams* p) {
  VERDICT_ASSIGN_OR_RETURN(v1::VerificationPolicy policy, ToProto(s.policy));
  p->set_policy(policy);
  p->set_draft_window(static_cast<int32_t>(s.window.k));
  p->set_adaptive_window(s.window.adaptive);
  if (s.window.adaptive) {
    p->set_min_window(static_cast<int32_t>(s.window.min_k));
    p->set_max_window(static_cast<int32_t>(s.window.max_k));
  }
  if (s.judge_threshold.has_value()) p->set_judge_threshold(*s.judge_threshold);
  if (s.lossy_threshold.has_value()) p->set_lossy_threshold(*s.lossy_threshold);
  if (s.typical_delta.has_value()) p->set_typical_delta(*s.typical_delta);
  p->set_disable_speculation(!s.speculate);
  return absl::OkStatus();
}

spec::ProposeRequest FromProto(const v1::ProposeRequest& p) {
  spec::ProposeRequest r;
  r.session_id = spec::DraftSessionId(p.session_id());
  r.step = p.step();
  r.keep_length = p.keep_length();
  r.append_tokens.assign(p.append_tokens().begin(), p.append_tokens().end());
  r.num_tokens = p.num_tokens();
  return r;
}

std::optional<spec::BlockOutcome> FromProto(const v1::ShardEvent& event) {
  if (event.has_verdict()) {
    const v1::VerdictEvent& v = event.verdict();
    return spec::BlockOutcome{spec::SessionId(v.session_id()), v.step(), absl::OkStatus(), FromProto(v.verdict())};
  }
  if (event.has_error()) {
    const v1::SessionError& e = event.error();
    absl::StatusCode code = static_cast<absl::StatusCode>(e.code());
    if (code == absl::StatusCode::kOk) code = absl::StatusCode::kInternal;
    return spec::BlockOutcome{spec::SessionId(e.session_id()), e.step(), absl::Status(code, e.message()),
                              std::nullopt};
  }
  return std::nullopt;
}

spec::SpeculationStats FromProto(const v1::SpeculationStats& p) {
  spec::SpeculationStats s;
  s.target_passes = p.target_passes();
  s.proposed = p.draft_tokens_proposed();
  s.accepted_exact = p.accepted_exact();
  s.accepted_judge = p.accepted_judge();
  s.accepted_lossy = p.accepted_lossy();
  s.accepted_histogram.assign(p.accepted_length_histogram().begin(), p.accepted_length_histogram().end());
  s.optimistic_blocks = p.optimistic_blocks();
  s.optimistic_hits = p.optimistic_hits();
  s.target_only_passes = p.target_only_passes();
  s.shadow_judge_only = p.shadow_judge_only();
  s.shadow_accepted = p.shadow_accepted();
  s.shadow_exact_only = p.shadow_exact_only();
  s.shadow_both = p.shadow_both();
  s.tokens = p.tokens();
  s.draft_failures = p.draft_failures();
  s.judge_head = p.judge_head();
  return s;
}

void ToProto(const spec::SpeculationStats& s, v1::SpeculationStats* p) {
  p->set_target_passes(s.target_passes);
  p->set_draft_tokens_proposed(s.proposed);
  p->set_accepted_exact(s.accepted_exact);
  p->set_accepted_judge(s.accepted_judge);
  p->set_accepted_lossy(s.accepted_lossy);
  p->mutable_accepted_length_histogram()->Assign(s.accepted_histogram.begin(), s.accepted_histogram.end());
  p->set_optimistic_blocks(s.optimistic_blocks);
  p->set_optimistic_hits(s.optimistic_hits);
  p->set_target_only_passes(s.target_only_passes);
  p->set_shadow_judge_only(s.shadow_judge_only);
  p->set_shadow_accepted(s.shadow_accepted);
  p->set_shadow_exact_only(s.shadow_exact_only);
  p->set_shadow_both(s.shadow_both);
  p->set_tokens(s.tokens);
  p->set_draft_failures(s.draft_failures);
  p->set_judge_head(s.judge_head);
}

}  // namespace verdict::wire
