// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the TargetShard service's requests from a coordinator and from the previous shard,
// converted as the service converts them (services/shard/target_shard_service.cc: wire::FromProto
// of the speculation and sampling parameters, DecodeForward, DecodeActivations) and run on the real
// shard cores (workers::TargetShard): a 4-layer random target (vocabulary 64, hidden 32, context
// 160) split into shard 0 (layers [0, 2)) and a last shard (layers [2, 4)) with a judge head.
// Shard 0's output travels to the last shard through the activation codec, f32 or bf16.
//
// Input: a message sequence (tests/fuzz/fuzz_util.h) of OpenShardSessionRequest (both shards),
// ForwardRequest (shard 0, then on through the chain), ActivationBatch (the last shard, a peer's
// payload in `data`) and CloseShardSessionRequest; structure-aware mutation.
// Invariants: errors carry the documented codes; every block that reaches the last shard gets one
// outcome with its session and step; a verdict accepts 0..k tokens with one reason per draft token, the accepted ones first,
// and a next token inside the vocabulary; shard 0 passes on rows x hidden activations for the blocks
// it ran; every session closes at the end.
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "clients/grpc/wire_convert.h"
#include "engine/backend.h"
#include "engine/slice_runner.h"
#include "judge/judge_head.h"
#include "judge/testing/paired_models.h"
#include "services/shard/activation_codec.h"
#include "tests/fuzz/fuzz_util.h"
#include "verdict/v1/target_shard.pb.h"
#include "workers/target_shard.h"

namespace verdict::fuzz {
namespace {

constexpr int64_t kVocab = 64;
constexpr int64_t kContext = 160;

struct Fixture {
  std::unique_ptr<engine::Backend> backend;
  engine::LlamaConfig config;
  std::unique_ptr<judge::testing::InMemoryWeights> weights;
  std::vector<std::unique_ptr<engine::ModelSlice>> slices;
  std::vector<std::unique_ptr<engine::SliceRunner>> runners;
  judge::JudgeHead head;
  std::unique_ptr<workers::TargetShard> first;
  std::unique_ptr<workers::TargetShard> last;
};

Fixture& TheFixture() {
  static Fixture* f = [] {
    auto* f = new Fixture;
    f->backend = engine::CreateCpuBackend({.num_threads = 1});
    f->config = judge::testing::SmallConfig(kVocab, kContext);
    f->config.num_layers = 4;
    f->weights = judge::testing::MakeWeights(f->config, 1, 4.0f);
    for (int i = 0; i < 2; ++i) {
      absl::StatusOr<std::unique_ptr<engine::ModelSlice>> slice =
          engine::ModelSlice::Create(f->config, *f->weights, {2 * i, 2 * i + 2}, f->backend.get());
      FUZZ_CHECK(slice.ok(), slice.status().ToString());
      f->slices.push_back(*std::move(slice));
      f->runners.push_back(engine::RunSingleSlice(f->slices.back().get()));
    }
    for (int64_t i = 0; i < f->config.hidden_size; ++i) f->head.weight.push_back(i % 3 == 0 ? 0.5f : -0.25f);
    f->head.bias = 0.1f;
    workers::TargetShardOptions options;
    options.max_sessions = 4;
    options.verify_threads = 1;
    absl::StatusOr<std::unique_ptr<workers::TargetShard>> first =
        workers::TargetShard::Create(f->runners[0].get(), nullptr, options);
    FUZZ_CHECK(first.ok(), first.status().ToString());
    absl::StatusOr<std::unique_ptr<workers::TargetShard>> last =
        workers::TargetShard::Create(f->runners[1].get(), &f->head, options);
    FUZZ_CHECK(last.ok(), last.status().ToString());
    f->first = *std::move(first);
    f->last = *std::move(last);
    return f;
  }();
  return *f;
}

const std::vector<const google::protobuf::Message*>& Types() {
  static const auto* types = new std::vector<const google::protobuf::Message*>{
      &v1::OpenShardSessionRequest::default_instance(), &v1::ForwardRequest::default_instance(),
      &v1::ActivationBatch::default_instance(), &v1::CloseShardSessionRequest::default_instance()};
  return *types;
}

bool IsOneOf(absl::StatusCode code, std::initializer_list<absl::StatusCode> codes) {
  for (absl::StatusCode c : codes) {
    if (c == code) return true;
  }
  return false;
}

void CheckOutcomes(const workers::ShardBatch& in, const workers::ShardForwardResult& r, bool last) {
  for (const spec::BlockOutcome& o : r.outcomes) {
    if (!o.status.ok()) {
      FUZZ_CHECK(IsOneOf(o.status.code(), {absl::StatusCode::kInvalidArgument, absl::StatusCode::kNotFound,
                                           absl::StatusCode::kResourceExhausted, absl::StatusCode::kAborted,
                                           absl::StatusCode::kFailedPrecondition}),
                 o.status.ToString());
      FUZZ_CHECK(!o.verdict.has_value());
    }
  }
  if (last) {
    // One outcome per block, matched by (session, step) as the coordinator's client matches them
    // (failures come first, then the blocks that ran, in order).
    FUZZ_CHECK(r.outcomes.size() == in.blocks.size(), r.outcomes.size(), " outcomes for ", in.blocks.size(),
               " blocks");
    FUZZ_CHECK(r.next.blocks.empty());
    std::map<std::pair<uint64_t, uint64_t>, std::vector<const spec::ShardBlock*>> blocks;
    for (const spec::ShardBlock& b : in.blocks) blocks[{b.session_id.value(), b.step}].push_back(&b);
    std::map<std::pair<uint64_t, uint64_t>, size_t> outcomes;
    for (const spec::BlockOutcome& o : r.outcomes) ++outcomes[{o.session_id.value(), o.step}];
    for (const auto& [key, list] : blocks) {
      FUZZ_CHECK(outcomes[key] == list.size(), "session ", key.first, " step ", key.second, ": ", outcomes[key],
                 " outcomes for ", list.size(), " blocks");
    }
    for (size_t i = 0; i < r.outcomes.size(); ++i) {
      const spec::BlockOutcome& o = r.outcomes[i];
      if (!o.status.ok()) continue;
      const std::vector<const spec::ShardBlock*>& same = blocks[{o.session_id.value(), o.step}];
      if (same.size() != 1) continue;  // the same session twice in a batch: only one may run
      const spec::ShardBlock& b = *same[0];
      FUZZ_CHECK(o.verdict.has_value() == b.verify, "a verdict for a prefill block or none for a verify block");
      if (!o.verdict.has_value()) continue;
      const spec::Verdict& v = *o.verdict;
      const int32_t k = static_cast<int32_t>(b.draft.tokens.size());
      FUZZ_CHECK(v.num_accepted >= 0 && v.num_accepted <= k, "accepted ", v.num_accepted, " of ", k);
      FUZZ_CHECK(v.next_token >= 0 && v.next_token < kVocab, "next token ", v.next_token);
      FUZZ_CHECK(static_cast<int32_t>(v.reasons.size()) == k, v.reasons.size(), " reasons for ", k, " tokens");
      for (int32_t j = 0; j < k; ++j) {
        const spec::AcceptReason reason = v.reasons[j];
        const bool accepted = reason == spec::AcceptReason::kExact || reason == spec::AcceptReason::kJudge ||
                              reason == spec::AcceptReason::kLossy;
        FUZZ_CHECK(accepted == (j < v.num_accepted), "reason ", j, " disagrees with ", v.num_accepted, " accepted");
      }
      FUZZ_CHECK(v.judge_scores.empty() || static_cast<int32_t>(v.judge_scores.size()) == k);
      // What the shard publishes, the coordinator's client reads back as the same verdict.
      v1::ShardEvent event;
      event.mutable_verdict()->set_session_id(o.session_id.value());
      event.mutable_verdict()->set_step(o.step);
      wire::ToProto(v, event.mutable_verdict()->mutable_verdict());
      std::optional<spec::BlockOutcome> back = wire::FromProto(event);
      FUZZ_CHECK(back.has_value() && back->verdict.has_value() && back->verdict->num_accepted == v.num_accepted &&
                 back->verdict->next_token == v.next_token && back->verdict->reasons == v.reasons);
    }
  } else {
    FUZZ_CHECK(r.next.blocks.size() + r.outcomes.size() == in.blocks.size(), "blocks lost on shard 0");
    int64_t rows = 0;
    for (const spec::ShardBlock& b : r.next.blocks) rows += b.num_tokens;
    FUZZ_CHECK(static_cast<int64_t>(r.next.activations.size()) == rows * TheFixture().config.hidden_size);
  }
}

void RunLast(workers::TargetShard& last, const workers::ShardBatch& batch) {
  if (batch.blocks.empty()) return;
  CheckOutcomes(batch, last.Forward(batch), /*last=*/true);
}

}  // namespace
}  // namespace verdict::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace verdict;  // NOLINT
  static const bool quiet = (fuzz::QuietProtobufLogs(), true);
  (void)quiet;
  fuzz::Fixture& f = fuzz::TheFixture();
  const int64_t hidden = f.config.hidden_size;
  const std::vector<fuzz::Entry> entries = fuzz::DecodeSequence(data, size, 4);
  std::vector<uint64_t> opened;
  int parsed = 0;
  for (const fuzz::Entry& e : entries) {
    if (e.type == 0) {
      v1::OpenShardSessionRequest r;
      if (!r.ParseFromString(e.bytes)) continue;
      ++parsed;
      // As TargetShardService::OpenSession, on every shard.
      absl::StatusOr<spec::SpeculationParams> params = wire::FromProto(r.speculation(), {});
      if (!params.ok()) {
        FUZZ_CHECK(params.status().code() == absl::StatusCode::kInvalidArgument, params.status().ToString());
        continue;
      }
      const spec::SessionId id(r.session_id());
      for (workers::TargetShard* shard : {f.first.get(), f.last.get()}) {
        const bool existed = shard->has_session(id);
        const int64_t cached_before = shard->cached_length(id);
        const absl::Status s = shard->OpenSession(id, r.capacity(), *params, wire::FromProto(r.target_sampling()));
        if (s.ok()) {
          // A new session is empty; the same open again (a retry) leaves the session as it was.
          FUZZ_CHECK(shard->cached_length(id) == (existed ? cached_before : 0));
          opened.push_back(id.value());
        } else {
          FUZZ_CHECK(fuzz::IsOneOf(s.code(), {absl::StatusCode::kInvalidArgument, absl::StatusCode::kAlreadyExists,
                                              absl::StatusCode::kResourceExhausted,
                                              absl::StatusCode::kFailedPrecondition}),
                     s.ToString());
          FUZZ_CHECK(existed == shard->has_session(id));
        }
      }
    } else if (e.type == 1) {
      v1::ForwardRequest r;
      if (!r.ParseFromString(e.bytes)) continue;
      ++parsed;
      absl::StatusOr<workers::ShardBatch> batch = services::DecodeForward(r, fuzz::kVocab);
      if (!batch.ok()) {
        FUZZ_CHECK(batch.status().code() == absl::StatusCode::kInvalidArgument, batch.status().ToString());
        continue;
      }
      const workers::ShardForwardResult out = f.first->Forward(*batch);
      fuzz::CheckOutcomes(*batch, out, /*last=*/false);
      if (out.next.blocks.empty()) continue;
      // Over the transport to the last shard, in the dtype the step number's low bit picks.
      const v1::ActivationDType dtype = (r.header().step() & 1) ? v1::ACTIVATION_DTYPE_BF16 : v1::ACTIVATION_DTYPE_F32;
      const services::EncodedActivations encoded = services::EncodeActivations(out.next, 0, hidden, dtype);
      absl::StatusOr<workers::ShardBatch> received =
          services::DecodeActivations(encoded.header, encoded.payload, hidden, fuzz::kVocab);
      FUZZ_CHECK(received.ok(), "shard 0's own output does not decode: ", received.status().ToString());
      fuzz::RunLast(*f.last, *received);
    } else if (e.type == 2) {
      v1::ActivationBatch r;
      if (!r.ParseFromString(e.bytes)) continue;
      ++parsed;
      // As TargetShardService::PushActivations; a mutated payload gets its length and CRC fixed
      // half the time (by the header's from_shard bit), so that the blocks reach the shard.
      if (r.from_shard() & 1) {
        r.set_data_bytes(r.data().size());
        r.set_crc32(services::Crc32(r.data()));
      }
      absl::StatusOr<workers::ShardBatch> batch = services::DecodeActivations(r, r.data(), hidden, fuzz::kVocab);
      if (!batch.ok()) {
        FUZZ_CHECK(fuzz::IsOneOf(batch.status().code(),
                                 {absl::StatusCode::kInvalidArgument, absl::StatusCode::kDataLoss}),
                   batch.status().ToString());
        continue;
      }
      fuzz::RunLast(*f.last, *batch);
    } else {
      v1::CloseShardSessionRequest r;
      if (!r.ParseFromString(e.bytes)) continue;
      ++parsed;
      for (workers::TargetShard* shard : {f.first.get(), f.last.get()}) {
        shard->CloseSession(spec::SessionId(r.session_id()));
        FUZZ_CHECK(!shard->has_session(spec::SessionId(r.session_id())));
      }
    }
  }
  for (uint64_t id : opened) {
    f.first->CloseSession(spec::SessionId(id));
    f.last->CloseSession(spec::SessionId(id));
  }
  FUZZ_CHECK(f.first->num_sessions() == 0 && f.last->num_sessions() == 0, "sessions left open");
  return parsed > 0 ? 0 : -1;
}

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size, unsigned int seed) {
  return verdict::fuzz::MutateSequence(verdict::fuzz::Types(), data, size, max_size, seed);
}

std::vector<std::string> VerdictFuzzSeeds() {
  using namespace verdict;  // NOLINT
  std::vector<std::string> seeds;
  for (v1::VerificationPolicy policy : {v1::VERIFICATION_POLICY_EXACT, v1::VERIFICATION_POLICY_JUDGE,
                                        v1::VERIFICATION_POLICY_JUDGE_SHADOW, v1::VERIFICATION_POLICY_LOSSY_TYPICAL}) {
    v1::OpenShardSessionRequest open;
    open.set_session_id(3);
    open.set_capacity(64);
    open.mutable_speculation()->set_policy(policy);
    if (policy == v1::VERIFICATION_POLICY_LOSSY_TYPICAL) {
      open.mutable_target_sampling()->set_temperature(0.7f);
      open.mutable_target_sampling()->set_seed(5);
    }
    // The first block: a 5-token prompt and 3 draft tokens; then [x_{n-1}, d1, d2] at n - 1.
    v1::ForwardRequest first;
    first.mutable_header()->set_session_id(3);
    first.mutable_header()->set_step(1);
    first.mutable_header()->set_num_tokens(8);
    first.mutable_header()->set_verify(true);
    for (int32_t t : {4, 8, 15, 16, 23}) first.add_token_ids(t);
    for (int32_t t : {42, 7, 9}) {
      first.add_token_ids(t);
      first.mutable_header()->mutable_draft()->add_tokens(t);
      first.mutable_header()->mutable_draft()->add_logprobs(-0.5f);
    }
    v1::ForwardRequest next;
    next.mutable_header()->set_session_id(3);
    next.mutable_header()->set_step(2);
    next.mutable_header()->set_start_position(5);
    next.mutable_header()->set_num_tokens(3);
    next.mutable_header()->set_verify(true);
    for (int32_t t : {11, 12, 13}) next.add_token_ids(t);
    for (int32_t t : {12, 13}) next.mutable_header()->mutable_draft()->add_tokens(t);
    v1::CloseShardSessionRequest close;
    close.set_session_id(3);
    seeds.push_back(fuzz::EncodeSequence({{0, open.SerializeAsString()},
                                          {1, first.SerializeAsString()},
                                          {1, next.SerializeAsString()},
                                          {3, close.SerializeAsString()}}));
  }
  // A previous shard's batch for the last shard: one prefill block of 4 rows (from_shard odd: the
  // fuzz target fixes its length and CRC after mutations).
  v1::OpenShardSessionRequest open;
  open.set_session_id(9);
  open.set_capacity(32);
  v1::ActivationBatch push;
  push.set_from_shard(1);
  push.set_hidden_size(32);
  push.set_dtype(v1::ACTIVATION_DTYPE_F32);
  v1::BlockHeader* b = push.add_blocks();
  b->set_session_id(9);
  b->set_step(1);
  b->set_num_tokens(4);
  b->set_verify(true);
  b->mutable_draft()->add_tokens(3);
  std::string payload(4 * 32 * sizeof(float), '\0');
  for (size_t i = 0; i < payload.size(); i += 4) payload[i + 3] = static_cast<char>(0x3f);  // 0.5f
  push.set_data(payload);
  push.set_data_bytes(payload.size());
  push.set_crc32(services::Crc32(payload));
  seeds.push_back(fuzz::EncodeSequence({{0, open.SerializeAsString()}, {2, push.SerializeAsString()}}));
  return seeds;
}
