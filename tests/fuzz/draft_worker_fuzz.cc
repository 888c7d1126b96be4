// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the DraftWorker service's requests from a (possibly broken or hostile) coordinator,
// converted as the service converts them (services/draft/draft_worker_service.cc) and run on the
// real worker core (workers::DraftWorker) over a small random draft model (vocabulary 64, context
// 128; judge/testing/paired_models.h). Consecutive Propose requests run as one ProposeBatch, as the
// worker's engine loop batches them.
//
// Input: a message sequence (tests/fuzz/fuzz_util.h) of OpenDraftSessionRequest, ProposeRequest
// and CloseDraftSessionRequest; structure-aware mutation through protobuf reflection.
// Invariants: errors carry the documented codes and leave the session's sequence unchanged; a
// proposal has the asked number of tokens inside the vocabulary, finite log-probabilities <= 0,
// echoes the step, extends the kept and appended sequence exactly, and converts to the wire and
// back (what the coordinator's client accepts); every session closes at the end.
#include <cmath>
#include <map>
#include <memory>
#include <vector>

#include "clients/grpc/wire_convert.h"
#include "engine/backend.h"
#include "judge/testing/paired_models.h"
#include "tests/fuzz/fuzz_util.h"
#include "verdict/v1/draft_worker.pb.h"
#include "workers/draft_worker.h"

namespace verdict::fuzz {
namespace {

constexpr int64_t kVocab = 64;
constexpr int64_t kContext = 128;

struct Fixture {
  std::unique_ptr<engine::Backend> backend;
  engine::LlamaConfig config;
  std::unique_ptr<judge::testing::InMemoryWeights> weights;
  std::unique_ptr<engine::ModelSlice> model;
  std::unique_ptr<workers::DraftWorker> worker;
};

Fixture& TheFixture() {
  static Fixture* f = [] {
    auto* f = new Fixture;
    f->backend = engine::CreateCpuBackend({.num_threads = 1});
    f->config = judge::testing::SmallConfig(kVocab, kContext);
    f->weights = judge::testing::MakeWeights(f->config, 7, 4.0f);
    f->model = judge::testing::MakeModel(f->config, *f->weights, f->backend.get());
    absl::StatusOr<std::unique_ptr<workers::DraftWorker>> worker =
        workers::DraftWorker::Create(f->model.get(), {.max_sessions = 4});
    FUZZ_CHECK(worker.ok(), worker.status().ToString());
    f->worker = *std::move(worker);
    return f;
  }();
  return *f;
}

const std::vector<const google::protobuf::Message*>& Types() {
  static const auto* types = new std::vector<const google::protobuf::Message*>{
      &v1::OpenDraftSessionRequest::default_instance(), &v1::ProposeRequest::default_instance(),
      &v1::CloseDraftSessionRequest::default_instance()};
  return *types;
}

bool IsOneOf(absl::StatusCode code, std::initializer_list<absl::StatusCode> codes) {
  for (absl::StatusCode c : codes) {
    if (c == code) return true;
  }
  return false;
}

void RunProposals(workers::DraftWorker& worker, const std::vector<spec::ProposeRequest>& requests) {
  if (requests.empty()) return;
  std::map<uint64_t, std::vector<int32_t>> before;
  for (const spec::ProposeRequest& r : requests) before[r.session_id.value()] = worker.sequence(r.session_id);
  std::map<uint64_t, int> failed;
  const std::vector<absl::StatusOr<spec::Proposal>> results = worker.ProposeBatch(requests);
  FUZZ_CHECK(results.size() == requests.size());
  for (size_t i = 0; i < results.size(); ++i) {
    const spec::ProposeRequest& r = requests[i];
    if (!results[i].ok()) {
      FUZZ_CHECK(IsOneOf(results[i].status().code(), {absl::StatusCode::kNotFound, absl::StatusCode::kInvalidArgument,
                                                      absl::StatusCode::kResourceExhausted}),
                 results[i].status().ToString());
      ++failed[r.session_id.value()];
      continue;
    }
    const spec::Proposal& p = *results[i];
    FUZZ_CHECK(p.step == r.step, "step ", p.step, " for ", r.step);
    FUZZ_CHECK(static_cast<int64_t>(p.block.tokens.size()) == r.num_tokens, p.block.tokens.size(), " tokens for ",
               r.num_tokens);
    for (int32_t t : p.block.tokens) FUZZ_CHECK(t >= 0 && t < kVocab, "token ", t);
    FUZZ_CHECK(p.block.logprobs.empty() || p.block.logprobs.size() == p.block.tokens.size());
    for (float lp : p.block.logprobs) FUZZ_CHECK(std::isfinite(lp) && lp <= 1e-6f, "log-probability ", lp);
    FUZZ_CHECK(p.sequence_length == r.keep_length + static_cast<int64_t>(r.append_tokens.size()) + r.num_tokens,
               "sequence length ", p.sequence_length);
    FUZZ_CHECK(p.sequence_length <= kContext + 1);
    // The sequence is the kept prefix, the appended tokens and the proposal.
    std::vector<int32_t> want(before[r.session_id.value()].begin(),
                              before[r.session_id.value()].begin() + r.keep_length);
    want.insert(want.end(), r.append_tokens.begin(), r.append_tokens.end());
    want.insert(want.end(), p.block.tokens.begin(), p.block.tokens.end());
    FUZZ_CHECK(worker.sequence(r.session_id) == want, "the session's sequence is not kept + appended + proposed");
    // What the service sends back, the coordinator's client reads as the same block.
    v1::ProposeResponse response;
    wire::ToProto(p.block, response.mutable_block());
    absl::StatusOr<spec::DraftBlock> back = wire::FromProto(response.block(), kVocab);
    FUZZ_CHECK(back.ok(), back.status().ToString());
    FUZZ_CHECK(back->tokens == p.block.tokens && back->logprobs.size() == p.block.logprobs.size());
  }
  // A session whose every request failed is unchanged ("leaves its session unchanged").
  for (const auto& [id, n] : failed) {
    int total = 0;
    for (const spec::ProposeRequest& r : requests) total += r.session_id.value() == id ? 1 : 0;
    if (n == total) {
      FUZZ_CHECK(worker.sequence(spec::DraftSessionId(id)) == before[id], "a failed proposal changed session ", id);
    }
  }
}

}  // namespace
}  // namespace verdict::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace verdict;  // NOLINT
  static const bool quiet = (fuzz::QuietProtobufLogs(), true);
  (void)quiet;
  fuzz::Fixture& f = fuzz::TheFixture();
  workers::DraftWorker& worker = *f.worker;
  const std::vector<fuzz::Entry> entries = fuzz::DecodeSequence(data, size, 3);
  std::vector<uint64_t> opened;
  std::vector<spec::ProposeRequest> batch;
  int parsed = 0;
  for (const fuzz::Entry& e : entries) {
    if (e.type != 1) {
      fuzz::RunProposals(worker, batch);
      batch.clear();
    }
    if (e.type == 0) {
      v1::OpenDraftSessionRequest r;
      if (!r.ParseFromString(e.bytes)) continue;
      ++parsed;
      // As DraftWorkerService::OpenSession.
      const std::vector<int32_t> prompt(r.prompt_tokens().begin(), r.prompt_tokens().end());
      const spec::DraftSessionId id(r.session_id());
      const bool existed = worker.has_session(id);
      const std::vector<int32_t> before = worker.sequence(id);
      const absl::Status s = worker.OpenSession(id, prompt, wire::FromProto(r.sampling()), r.capacity(),
                                                /*record_distributions=*/false);
      if (s.ok()) {
        // A new session holds the prompt; the same open again (a retry) leaves the session as it was.
        FUZZ_CHECK(existed ? worker.sequence(id) == before : worker.sequence(id) == prompt);
        opened.push_back(id.value());
      } else {
        FUZZ_CHECK(fuzz::IsOneOf(s.code(), {absl::StatusCode::kInvalidArgument, absl::StatusCode::kAlreadyExists,
                                            absl::StatusCode::kResourceExhausted}),
                   s.ToString());
        FUZZ_CHECK(existed == worker.has_session(id), "a failed open changed whether the session exists");
      }
    } else if (e.type == 1) {
      v1::ProposeRequest r;
      if (!r.ParseFromString(e.bytes)) continue;
      ++parsed;
      batch.push_back(wire::FromProto(r));  // as DraftWorkerService::Propose
    } else {
      v1::CloseDraftSessionRequest r;
      if (!r.ParseFromString(e.bytes)) continue;
      ++parsed;
      worker.CloseSession(spec::DraftSessionId(r.session_id()));
      FUZZ_CHECK(!worker.has_session(spec::DraftSessionId(r.session_id())));
    }
  }
  fuzz::RunProposals(worker, batch);
  for (uint64_t id : opened) worker.CloseSession(spec::DraftSessionId(id));
  FUZZ_CHECK(worker.num_sessions() == 0, "sessions left open: ", worker.num_sessions());
  return parsed > 0 ? 0 : -1;
}

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size, unsigned int seed) {
  return verdict::fuzz::MutateSequence(verdict::fuzz::Types(), data, size, max_size, seed);
}

std::vector<std::string> VerdictFuzzSeeds() {
  using namespace verdict;  // NOLINT
  v1::OpenDraftSessionRequest open;
  open.set_session_id(5);
  for (int32_t t : {1, 7, 9, 33, 2}) open.add_prompt_tokens(t);
  open.set_capacity(64);
  v1::OpenDraftSessionRequest sampled = open;
  sampled.set_session_id(6);
  sampled.mutable_sampling()->set_temperature(0.8f);
  sampled.mutable_sampling()->set_top_k(8);
  sampled.mutable_sampling()->set_top_p(0.9f);
  sampled.mutable_sampling()->set_seed(11);
  v1::ProposeRequest first;
  first.set_session_id(5);
  first.set_step(1);
  first.set_keep_length(5);
  first.set_num_tokens(4);
  v1::ProposeRequest rollback = first;
  rollback.set_step(2);
  rollback.set_keep_length(6);
  rollback.add_append_tokens(12);
  v1::ProposeRequest other = first;
  other.set_session_id(6);
  v1::CloseDraftSessionRequest close;
  close.set_session_id(5);
  std::vector<fuzz::Entry> session = {{0, open.SerializeAsString()},     {0, sampled.SerializeAsString()},
                                      {1, first.SerializeAsString()},    {1, other.SerializeAsString()},
                                      {2, std::string()},                {1, rollback.SerializeAsString()},
                                      {2, close.SerializeAsString()}};
  return {fuzz::EncodeSequence(session), fuzz::EncodeSequence({session[0], session[2]})};
}
