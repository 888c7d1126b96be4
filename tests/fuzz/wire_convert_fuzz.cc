// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the wire conversions (clients/grpc/wire_convert.h) of every shared message, and what
// the coordinator reads from its members' replies: a shard's events (the verdicts and errors of
// its Events stream), a draft worker's ProposeResponse (checked as GrpcDraftClient checks it), and
// the messages served as JSON (the admin status, a GenerateResponse's statistics as the HTTP API
// prints them, ListModels' entries as /v1/models prints them).
//
// Input: a message sequence (tests/fuzz/fuzz_util.h) of any of the types in Types().
// Invariants: a conversion that succeeds gives values inside their documented ranges and converts
// back to the same wire values; an error event is a non-OK status with a real code; the JSON forms
// print, and the admin status's JSON parses back to the same message.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "clients/grpc/wire_convert.h"
#include "google/protobuf/util/field_comparator.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "services/openai/openai_protocol.h"
#include "spec/sampling_params.h"
#include "spec/speculation_params.h"
#include "spec/speculation_stats.h"
#include "tests/fuzz/fuzz_util.h"
#include "verdict/v1/admin.pb.h"
#include "verdict/v1/draft_worker.pb.h"
#include "verdict/v1/generation.pb.h"
#include "verdict/v1/target_shard.pb.h"

namespace verdict::fuzz {
namespace {

constexpr int64_t kVocab = 64;

const std::vector<const google::protobuf::Message*>& Types() {
  static const auto* types = new std::vector<const google::protobuf::Message*>{
      &v1::SamplingParams::default_instance(),   &v1::SpeculationParams::default_instance(),
      &v1::DraftBlock::default_instance(),       &v1::BlockHeader::default_instance(),
      &v1::BlockVerdict::default_instance(),     &v1::SpeculationStats::default_instance(),
      &v1::ShardEvent::default_instance(),       &v1::ProposeResponse::default_instance(),
      &v1::ClusterStatus::default_instance(),    &v1::GenerateResponse::default_instance(),
      &v1::ListModelsResponse::default_instance()};
  return *types;
}

bool SameFloat(float a, float b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

// The differences in known fields (unknown fields do not survive a conversion or JSON), NaN equal
// to NaN; empty when there are none.
std::string Differences(const google::protobuf::Message& a, const google::protobuf::Message& b) {
  std::unique_ptr<google::protobuf::Message> known_a(a.New());
  known_a->CopyFrom(a);
  known_a->DiscardUnknownFields();
  std::unique_ptr<google::protobuf::Message> known_b(b.New());
  known_b->CopyFrom(b);
  known_b->DiscardUnknownFields();
  PositiveZeros(known_a.get());
  PositiveZeros(known_b.get());
  google::protobuf::util::DefaultFieldComparator comparator;
  comparator.set_treat_nan_as_equal(true);
  google::protobuf::util::MessageDifferencer differencer;
  differencer.set_field_comparator(&comparator);
  std::string report;
  differencer.ReportDifferencesToString(&report);
  return differencer.Compare(*known_a, *known_b) ? std::string() : report;
}

void Sampling(const v1::SamplingParams& p) {
  const spec::SamplingParams s = wire::FromProto(p);
  FUZZ_CHECK(s.top_p != 0.0f, "top_p 0 reads as 1");
  v1::SamplingParams again;
  wire::ToProto(s, &again);
  const spec::SamplingParams t = wire::FromProto(again);
  FUZZ_CHECK(SameFloat(s.temperature, t.temperature) && s.top_k == t.top_k && SameFloat(s.top_p, t.top_p) &&
                 s.seed == t.seed,
             "sampling parameters changed on a round trip");
  const absl::Status valid = spec::ValidateSamplingParams(s);
  if (!valid.ok()) {
    FUZZ_CHECK(valid.code() == absl::StatusCode::kInvalidArgument, valid.ToString());
    return;
  }
  FUZZ_CHECK(std::isfinite(s.temperature) && s.temperature >= 0, "temperature ", s.temperature);
  FUZZ_CHECK(s.top_p > 0 && s.top_p <= 1, "top_p ", s.top_p);
}

void Speculation(const v1::SpeculationParams& p) {
  for (const wire::SpeculationDefaults& defaults :
       {wire::SpeculationDefaults{}, wire::SpeculationDefaults{spec::Policy::kJudge, 16}}) {
    absl::StatusOr<spec::SpeculationParams> s = wire::FromProto(p, defaults);
    if (!s.ok()) {
      FUZZ_CHECK(s.status().code() == absl::StatusCode::kInvalidArgument, s.status().ToString());
      continue;
    }
    FUZZ_CHECK(spec::HasWireForm(s->policy));
    FUZZ_CHECK(s->window.k >= 1, "window ", s->window.k);
    if (s->window.adaptive) FUZZ_CHECK(s->window.k >= s->window.min_k && s->window.k <= s->window.max_k);
    const absl::Status valid = spec::ValidateSpeculationParams(*s);
    if (!valid.ok()) {
      FUZZ_CHECK(valid.code() == absl::StatusCode::kInvalidArgument, valid.ToString());
      continue;
    }
    FUZZ_CHECK(s->window.k <= spec::kMaxDraftTokens, "window ", s->window.k);
    v1::SpeculationParams wire_form;
    FUZZ_CHECK(wire::ToProto(*s, &wire_form).ok());
    absl::StatusOr<spec::SpeculationParams> again = wire::FromProto(wire_form, defaults);
    FUZZ_CHECK(again.ok(), again.status().ToString());
    FUZZ_CHECK(again->policy == s->policy && again->window.k == s->window.k &&
                   again->window.adaptive == s->window.adaptive && again->speculate == s->speculate &&
                   (!s->window.adaptive || (again->window.min_k == s->window.min_k &&
                                            again->window.max_k == s->window.max_k)),
               "speculation parameters changed on a round trip");
    FUZZ_CHECK(again->judge_threshold.has_value() == s->judge_threshold.has_value() &&
               again->lossy_threshold.has_value() == s->lossy_threshold.has_value() &&
               again->typical_delta.has_value() == s->typical_delta.has_value());
  }
}

void CheckBlock(const spec::DraftBlock& b, int64_t vocab) {
  FUZZ_CHECK(static_cast<int64_t>(b.tokens.size()) <= spec::kMaxDraftTokens);
  FUZZ_CHECK(b.logprobs.empty() || b.logprobs.size() == b.tokens.size());
  FUZZ_CHECK(b.proposals.empty() || b.proposals.size() == b.tokens.size());
  for (int32_t t : b.tokens) FUZZ_CHECK(t >= 0 && (vocab == 0 || t < vocab), "token ", t);
  for (const spec::DraftDistribution& q : b.proposals) {
    FUZZ_CHECK(q.ids.size() == q.probs.size());
    for (size_t i = 0; i < q.ids.size(); ++i) {
      FUZZ_CHECK(q.ids[i] >= 0 && (vocab == 0 || q.ids[i] < vocab) && (i == 0 || q.ids[i] > q.ids[i - 1]));
      FUZZ_CHECK(q.probs[i] >= 0 && q.probs[i] <= 1, "probability ", q.probs[i]);
    }
  }
  v1::DraftBlock wire_form;
  wire::ToProto(b, &wire_form);
  absl::StatusOr<spec::DraftBlock> again = wire::FromProto(wire_form, vocab);
  FUZZ_CHECK(again.ok(), again.status().ToString());
  FUZZ_CHECK(again->tokens == b.tokens && again->logprobs.size() == b.logprobs.size() &&
             again->proposals.size() == b.proposals.size());
}

void Block(const v1::DraftBlock& p) {
  for (int64_t vocab : {int64_t{0}, kVocab}) {
    absl::StatusOr<spec::DraftBlock> b = wire::FromProto(p, vocab);
    if (!b.ok()) {
      FUZZ_CHECK(b.status().code() == absl::StatusCode::kInvalidArgument, b.status().ToString());
      continue;
    }
    CheckBlock(*b, vocab);
  }
}

void Header(const v1::BlockHeader& p) {
  absl::StatusOr<spec::ShardBlock> b = wire::FromProto(p, kVocab);
  if (!b.ok()) {
    FUZZ_CHECK(b.status().code() == absl::StatusCode::kInvalidArgument, b.status().ToString());
    return;
  }
  FUZZ_CHECK(b->num_tokens >= 1 && b->start_position >= 0);
  CheckBlock(b->draft, kVocab);
  v1::BlockHeader again;
  wire::ToProto(*b, &again);
  FUZZ_CHECK(again.session_id() == p.session_id() && again.step() == p.step() &&
             again.start_position() == p.start_position() && again.num_tokens() == p.num_tokens() &&
             again.verify() == p.verify());
}

void Verdict(const v1::BlockVerdict& p) {
  const spec::Verdict v = wire::FromProto(p);
  FUZZ_CHECK(static_cast<int>(v.reasons.size()) == p.reasons_size());
  v1::BlockVerdict again;
  wire::ToProto(v, &again);
  const spec::Verdict w = wire::FromProto(again);
  FUZZ_CHECK(w.num_accepted == v.num_accepted && w.next_token == v.next_token && w.reasons == v.reasons &&
             w.judge_scores.size() == v.judge_scores.size() && w.shadow_num_accepted == v.shadow_num_accepted);
}

void Stats(const v1::SpeculationStats& p) {
  const spec::SpeculationStats s = wire::FromProto(p);
  v1::SpeculationStats again;
  wire::ToProto(s, &again);
  const std::string diff = Differences(p, again);
  FUZZ_CHECK(diff.empty(), "speculation statistics changed on a round trip: ", diff);
  FUZZ_CHECK(!spec::StatsJson(s).dump().empty());
}

void Event(const v1::ShardEvent& e) {
  std::optional<spec::BlockOutcome> o = wire::FromProto(e);
  FUZZ_CHECK(o.has_value() == (e.event_case() != v1::ShardEvent::EVENT_NOT_SET));
  if (!o.has_value()) return;
  if (e.has_verdict()) {
    FUZZ_CHECK(o->status.ok() && o->verdict.has_value());
    FUZZ_CHECK(o->session_id.value() == e.verdict().session_id() && o->step == e.verdict().step());
    return;
  }
  // A shard's error fails the block with a real status code (google.rpc.Code, 1..16), never OK.
  const int code = static_cast<int>(o->status.code());
  FUZZ_CHECK(!o->status.ok() && code >= 1 && code <= 16, "a shard's error code ", e.error().code(), " became ", code);
  FUZZ_CHECK(!o->verdict.has_value());
  FUZZ_CHECK(wire::ToGrpc(o->status).error_code() == static_cast<grpc::StatusCode>(code));
}

void Proposal(const v1::ProposeResponse& r) {
  // As GrpcDraftClient::Propose's reply.
  absl::StatusOr<spec::DraftBlock> block = wire::FromProto(r.block());
  if (!block.ok()) {
    FUZZ_CHECK(block.status().code() == absl::StatusCode::kInvalidArgument);
    return;
  }
  CheckBlock(*block, 0);
}

void Status(const v1::ClusterStatus& s) {
  // As the coordinator's /v1/status prints it.
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(s, &json, options).ok()) return;
  v1::ClusterStatus back;
  FUZZ_CHECK(google::protobuf::util::JsonStringToMessage(json, &back).ok(), "the status JSON does not parse: ", json);
  const std::string diff = Differences(s, back);
  FUZZ_CHECK(diff.empty(), "the status changed through JSON: ", diff, json);
}

void Response(const v1::GenerateResponse& r) {
  if (!r.has_final()) return;
  // As the HTTP API prints a final message.
  FUZZ_CHECK(!services::openai::VerdictJson(r.final()).dump().empty());
  FUZZ_CHECK(!services::openai::UsageJson(r.final()).dump().empty());
}

void Models(const v1::ListModelsResponse& r) {
  for (const v1::ModelInfo& m : r.models()) {
    FUZZ_CHECK(!services::openai::ModelsJson(m, 1).dump().empty());
  }
}

}  // namespace
}  // namespace verdict::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace verdict;  // NOLINT
  static const bool quiet = (fuzz::QuietProtobufLogs(), true);
  (void)quiet;
  const std::vector<const google::protobuf::Message*>& types = fuzz::Types();
  int parsed = 0;
  for (const fuzz::Entry& e : fuzz::DecodeSequence(data, size, static_cast<int>(types.size()))) {
    std::unique_ptr<google::protobuf::Message> m(types[e.type]->New());
    if (!m->ParseFromString(e.bytes)) continue;
    ++parsed;
    switch (e.type) {
      case 0: fuzz::Sampling(static_cast<const v1::SamplingParams&>(*m)); break;
      case 1: fuzz::Speculation(static_cast<const v1::SpeculationParams&>(*m)); break;
      case 2: fuzz::Block(static_cast<const v1::DraftBlock&>(*m)); break;
      case 3: fuzz::Header(static_cast<const v1::BlockHeader&>(*m)); break;
      case 4: fuzz::Verdict(static_cast<const v1::BlockVerdict&>(*m)); break;
      case 5: fuzz::Stats(static_cast<const v1::SpeculationStats&>(*m)); break;
      case 6: fuzz::Event(static_cast<const v1::ShardEvent&>(*m)); break;
      case 7: fuzz::Proposal(static_cast<const v1::ProposeResponse&>(*m)); break;
      case 8: fuzz::Status(static_cast<const v1::ClusterStatus&>(*m)); break;
      case 9: fuzz::Response(static_cast<const v1::GenerateResponse&>(*m)); break;
      default: fuzz::Models(static_cast<const v1::ListModelsResponse&>(*m)); break;
    }
  }
  return parsed > 0 ? 0 : -1;
}

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size, unsigned int seed) {
  return verdict::fuzz::MutateSequence(verdict::fuzz::Types(), data, size, max_size, seed);
}

std::vector<std::string> VerdictFuzzSeeds() {
  using namespace verdict;  // NOLINT
  std::vector<fuzz::Entry> entries;
  v1::SamplingParams sampling;
  sampling.set_temperature(0.7f);
  sampling.set_top_k(5);
  sampling.set_top_p(0.9f);
  sampling.set_seed(3);
  entries.push_back({0, sampling.SerializeAsString()});
  v1::SpeculationParams speculation;
  speculation.set_policy(v1::VERIFICATION_POLICY_JUDGE);
  speculation.set_adaptive_window(true);
  speculation.set_min_window(2);
  speculation.set_max_window(12);
  speculation.set_judge_threshold(0.4f);
  entries.push_back({1, speculation.SerializeAsString()});
  v1::DraftBlock block;
  for (int32_t t : {3, 9, 27}) {
    block.add_tokens(t);
    block.add_logprobs(-0.25f);
    v1::TokenDistribution* q = block.add_proposals();
    for (int32_t id : {t, t + 1}) {
      q->add_token_ids(id);
      q->add_probs(0.5f);
    }
  }
  entries.push_back({2, block.SerializeAsString()});
  v1::BlockHeader header;
  header.set_session_id(4);
  header.set_step(2);
  header.set_start_position(10);
  header.set_num_tokens(4);
  header.set_verify(true);
  *header.mutable_draft() = block;
  entries.push_back({3, header.SerializeAsString()});
  v1::BlockVerdict verdict;
  verdict.set_num_accepted(1);
  verdict.set_next_token(17);
  for (v1::AcceptReason r : {v1::ACCEPT_REASON_EXACT, v1::ACCEPT_REASON_REJECTED, v1::ACCEPT_REASON_NOT_REACHED}) {
    verdict.add_reasons(r);
    verdict.add_judge_scores(0.25f);
  }
  entries.push_back({4, verdict.SerializeAsString()});
  v1::SpeculationStats stats;
  stats.set_target_passes(10);
  stats.set_draft_tokens_proposed(40);
  stats.set_accepted_exact(20);
  stats.set_accepted_judge(5);
  for (int64_t n : {1, 2, 3, 4}) stats.add_accepted_length_histogram(n);
  stats.set_tokens(35);
  entries.push_back({5, stats.SerializeAsString()});
  v1::ShardEvent event;
  event.mutable_verdict()->set_session_id(4);
  event.mutable_verdict()->set_step(2);
  *event.mutable_verdict()->mutable_verdict() = verdict;
  entries.push_back({6, event.SerializeAsString()});
  v1::ShardEvent error;
  error.mutable_error()->set_session_id(4);
  error.mutable_error()->set_step(3);
  error.mutable_error()->set_code(14);
  error.mutable_error()->set_message("target shard 1 is down");
  entries.push_back({6, error.SerializeAsString()});
  v1::ProposeResponse proposal;
  proposal.set_step(3);
  *proposal.mutable_block() = block;
  proposal.set_sequence_length(13);
  entries.push_back({7, proposal.SerializeAsString()});
  v1::ClusterStatus status;
  status.set_cluster("local");
  status.set_uptime_seconds(12.5);
  v1::MemberStatus* member = status.add_members();
  member->set_role("shard 0");
  member->set_layers("[0, 2)");
  member->set_forward_ms_mean(-1);
  *status.mutable_totals() = stats;
  status.add_sessions()->set_policy("judge");
  entries.push_back({8, status.SerializeAsString()});
  v1::GenerateResponse response;
  response.mutable_final()->set_finish_reason(v1::FINISH_REASON_LENGTH);
  *response.mutable_final()->mutable_stats() = stats;
  response.mutable_final()->set_seconds(0.5);
  entries.push_back({9, response.SerializeAsString()});
  v1::ListModelsResponse models;
  v1::ModelInfo* model = models.add_models();
  model->set_name("arith-target");
  model->add_allowed_policies(v1::VERIFICATION_POLICY_JUDGE);
  entries.push_back({10, models.SerializeAsString()});
  return {fuzz::EncodeSequence(entries)};
}
