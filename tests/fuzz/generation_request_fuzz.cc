// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the client API (verdict.v1.Verdict, generation.proto) as the coordinator serves it:
// Generate's validation and defaults (GenerationService::Prepare, the one place a client request
// becomes a coordinator request), and Tokenize / Detokenize on the served tokenizer (the calls the
// service makes), with the arithmetic target's tokenizer (tests/fuzz/served_model.h).
//
// Input: a message sequence (tests/fuzz/fuzz_util.h) of GenerateRequest (checked against a server
// with the defaults and one that allows every policy and has a judge), TokenizeRequest and
// DetokenizeRequest; structure-aware mutation.
// Invariants: Prepare's errors are the documented codes and its successes pass CheckPrepared;
// Tokenize gives ids inside the vocabulary; Detokenize gives valid UTF-8 (the response parses
// back, as a client's proto3 parser requires) and decodes Tokenize's ids back to their text.
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_util.h"
#include "tests/fuzz/served_model.h"
#include "verdict/v1/generation.pb.h"

namespace verdict::fuzz {
namespace {

const std::vector<const google::protobuf::Message*>& Types() {
  static const auto* types = new std::vector<const google::protobuf::Message*>{
      &v1::GenerateRequest::default_instance(), &v1::TokenizeRequest::default_instance(),
      &v1::DetokenizeRequest::default_instance()};
  return *types;
}

void Generate(const v1::GenerateRequest& r) {
  const ServedServices& served = Served();
  for (const services::GenerationService* service : {served.exact_only.get(), served.everything.get()}) {
    absl::StatusOr<coordinator::GenerationRequest> prepared = service->Prepare(r);
    if (!prepared.ok()) {
      const absl::StatusCode code = prepared.status().code();
      FUZZ_CHECK(code == absl::StatusCode::kNotFound || code == absl::StatusCode::kInvalidArgument ||
                     code == absl::StatusCode::kPermissionDenied || code == absl::StatusCode::kFailedPrecondition,
                 prepared.status().ToString());
      continue;
    }
    CheckPrepared(*prepared, service->model());
  }
}

void Tokenize(const v1::TokenizeRequest& r) {
  const engine::Tokenizer& tokenizer = *Served().tokenizer;
  // As GenerationService::Tokenize.
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer.Encode(r.text(), {r.add_bos(), /*parse_special=*/false});
  FUZZ_CHECK(ids.ok(), "Encode failed: ", ids.status().ToString());
  for (int32_t id : *ids) FUZZ_CHECK(id >= 0 && id < tokenizer.vocab_size(), "token ", id);
  v1::TokenizeResponse response;
  response.mutable_token_ids()->Assign(ids->begin(), ids->end());
  if (!r.add_bos()) {
    absl::StatusOr<std::string> text = tokenizer.Decode(*ids, /*skip_special=*/false);
    FUZZ_CHECK(text.ok() && *text == r.text(), "Detokenize(Tokenize(text)) is not the text");
  }
}

void Detokenize(const v1::DetokenizeRequest& r) {
  const engine::Tokenizer& tokenizer = *Served().tokenizer;
  const std::vector<int32_t> ids(r.token_ids().begin(), r.token_ids().end());
  // As GenerationService::Detokenize.
  absl::StatusOr<std::string> text = tokenizer.Decode(ids, /*skip_special=*/false);
  if (!text.ok()) {
    FUZZ_CHECK(text.status().code() == absl::StatusCode::kInvalidArgument, text.status().ToString());
    return;
  }
  v1::DetokenizeResponse response;
  response.set_text(*text);
  v1::DetokenizeResponse client_side;
  FUZZ_CHECK(client_side.ParseFromString(response.SerializeAsString()) && client_side.text() == *text,
             "the Detokenize response does not parse (text not valid UTF-8?)");
}

}  // namespace
}  // namespace verdict::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace verdict;  // NOLINT
  static const bool quiet = (fuzz::QuietProtobufLogs(), true);
  (void)quiet;
  int parsed = 0;
  for (const fuzz::Entry& e : fuzz::DecodeSequence(data, size, 3)) {
    if (e.type == 0) {
      v1::GenerateRequest r;
      if (!r.ParseFromString(e.bytes)) continue;
      ++parsed;
      fuzz::Generate(r);
    } else if (e.type == 1) {
      v1::TokenizeRequest r;
      if (!r.ParseFromString(e.bytes)) continue;
      ++parsed;
      fuzz::Tokenize(r);
    } else {
      v1::DetokenizeRequest r;
      if (!r.ParseFromString(e.bytes)) continue;
      ++parsed;
      fuzz::Detokenize(r);
    }
  }
  return parsed > 0 ? 0 : -1;
}

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size, unsigned int seed) {
  return verdict::fuzz::MutateSequence(verdict::fuzz::Types(), data, size, max_size, seed);
}

std::vector<std::string> VerdictFuzzSeeds() {
  using namespace verdict;  // NOLINT
  v1::GenerateRequest text;
  text.set_model("arith-target");
  text.set_prompt("Q: Tom has 87 cookies. He finds 8 more. How many?\nA:");
  text.set_max_tokens(8);
  text.mutable_sampling()->set_temperature(0.0f);
  text.mutable_speculation()->set_policy(v1::VERIFICATION_POLICY_JUDGE);
  text.mutable_speculation()->set_draft_window(4);
  text.mutable_speculation()->set_judge_threshold(0.3f);
  text.mutable_stop()->Add()->push_back('\n');
  text.add_stop_token_ids(0);
  v1::GenerateRequest ids;
  for (int32_t t : {1, 5, 9, 12, 30}) ids.mutable_prompt_tokens()->add_ids(t);
  ids.mutable_sampling()->set_temperature(0.7f);
  ids.mutable_sampling()->set_top_k(5);
  ids.mutable_sampling()->set_top_p(0.9f);
  ids.mutable_speculation()->set_policy(v1::VERIFICATION_POLICY_LOSSY_TYPICAL);
  ids.mutable_speculation()->set_adaptive_window(true);
  ids.mutable_speculation()->set_min_window(2);
  ids.mutable_speculation()->set_max_window(8);
  ids.mutable_speculation()->set_lossy_threshold(0.2f);
  ids.mutable_speculation()->set_typical_delta(0.3f);
  ids.set_ignore_eos(true);
  v1::TokenizeRequest tokenize;
  tokenize.set_text("Tom has 87 cookies.");
  v1::DetokenizeRequest detokenize;
  for (int32_t t : {3, 4, 5, 60}) detokenize.add_token_ids(t);
  return {fuzz::EncodeSequence({{0, text.SerializeAsString()}, {0, ids.SerializeAsString()},
                                {1, tokenize.SerializeAsString()}, {2, detokenize.SerializeAsString()}})};
}
