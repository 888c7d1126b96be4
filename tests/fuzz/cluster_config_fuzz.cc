// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the cluster config loader (services/config/cluster_config.h), which every process of
// a cluster runs on its config file (textproto or JSON).
//
// Input: byte 0 = mode (bit 0: JSON, else textproto; bits 2-5: the target's layer count to check
// coverage against, 0 = unchecked), then the file's text. The custom mutator parses the text,
// mutates the message through protobuf reflection and prints it back in the same syntax (so most
// mutated inputs parse and reach the validation), or mutates bytes.
// Invariants of a config that loads: it validates again; the defaults are filled (nonzero windows,
// limits, a transport kind and dtype); its shards tile [0, n) with non-empty ranges; it prints as
// textproto and as JSON and both load back to the same message.
#include <string>

#include "google/protobuf/text_format.h"
#include "google/protobuf/util/field_comparator.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "services/config/cluster_config.h"
#include "tests/fuzz/fuzz_util.h"

namespace verdict::fuzz {
namespace {

// The differences between `a` and `b` (NaN equals NaN), empty when they are the same.
std::string Differences(const v1::ClusterConfig& a, const v1::ClusterConfig& b) {
  google::protobuf::util::DefaultFieldComparator comparator;
  comparator.set_treat_nan_as_equal(true);
  google::protobuf::util::MessageDifferencer differencer;
  differencer.set_field_comparator(&comparator);
  std::string report;
  differencer.ReportDifferencesToString(&report);
  return differencer.Compare(a, b) ? std::string() : report;
}

void CheckConfig(const v1::ClusterConfig& c, int64_t num_layers) {
  const absl::Status again = services::ValidateClusterConfig(c, num_layers);
  FUZZ_CHECK(again.ok(), "a loaded config fails validation: ", again.ToString());
  FUZZ_CHECK(!c.target().path().empty() && !c.coordinator().listen().empty() && c.shards_size() > 0);
  const v1::CoordinatorConfig& co = c.coordinator();
  FUZZ_CHECK(co.default_draft_window() != 0 && co.default_max_tokens() != 0 && co.max_sessions() != 0 &&
                 co.draft_deadline_ms() != 0 && co.has_pipelined() && co.max_request_bytes() != 0,
             "a default is not filled");
  FUZZ_CHECK(c.transport().kind() != v1::TransportConfig::KIND_UNSPECIFIED);
  FUZZ_CHECK(c.transport().dtype() != v1::ACTIVATION_DTYPE_UNSPECIFIED);
  int64_t next = 0;
  for (const v1::TargetShardConfig& s : c.shards()) {
    FUZZ_CHECK(s.layer_begin() == next && s.layer_end() > s.layer_begin(), "shard layers [", s.layer_begin(), ", ",
               s.layer_end(), ") after ", next);
    FUZZ_CHECK(s.max_batch_tokens() != 0 && !s.listen().empty());
    next = s.layer_end();
  }
  if (num_layers > 0) FUZZ_CHECK(next == num_layers);
  if (c.has_draft()) FUZZ_CHECK(c.draft().max_batch_tokens() != 0 && !c.draft().model().path().empty());

  std::string text;
  FUZZ_CHECK(google::protobuf::TextFormat::PrintToString(c, &text));
  absl::StatusOr<v1::ClusterConfig> from_text = services::ParseClusterConfig(text, /*json=*/false, num_layers);
  FUZZ_CHECK(from_text.ok(), "a loaded config printed as textproto does not load: ", from_text.status().ToString(),
             "\n", text);
  const std::string text_diff = Differences(c, *from_text);
  FUZZ_CHECK(text_diff.empty(), "textproto round trip changed the config:\n", text_diff, text);
  // JSON carries only valid UTF-8, while the textproto parser keeps any bytes in a string (a path
  // may be any bytes); compare the JSON form only for configs that a binary parse accepts (proto3
  // strings must be UTF-8 there).
  v1::ClusterConfig binary;
  const bool utf8 = binary.ParseFromString(c.SerializePartialAsString());
  std::string json;
  if (utf8 && google::protobuf::util::MessageToJsonString(c, &json).ok()) {
    absl::StatusOr<v1::ClusterConfig> from_json = services::ParseClusterConfig(json, /*json=*/true, num_layers);
    FUZZ_CHECK(from_json.ok(), "a loaded config printed as JSON does not load: ", from_json.status().ToString(), "\n",
               json);
    const std::string json_diff = Differences(c, *from_json);
    FUZZ_CHECK(json_diff.empty(), "JSON round trip changed the config:\n", json_diff, json);
  }
}

// The parse without FillDefaults or validation (for the mutator).
bool ParseRaw(const std::string& text, bool json, v1::ClusterConfig* c) {
  if (json) {
    return google::protobuf::util::JsonStringToMessage(text, c).ok();
  }
  google::protobuf::TextFormat::Parser parser;
  parser.AllowPartialMessage(true);
  return parser.ParseFromString(text, c);
}

std::string Print(const v1::ClusterConfig& c, bool json) {
  std::string out;
  if (json) {
    if (!google::protobuf::util::MessageToJsonString(c, &out).ok()) out.clear();
  } else {
    google::protobuf::TextFormat::PrintToString(c, &out);
  }
  return out;
}

}  // namespace
}  // namespace verdict::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace verdict;  // NOLINT
  static const bool quiet = (fuzz::QuietProtobufLogs(), true);
  (void)quiet;
  if (size < 1) return 0;
  const bool json = (data[0] & 1) != 0;
  const int64_t num_layers = (data[0] >> 2) & 15;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  absl::StatusOr<v1::ClusterConfig> config = services::ParseClusterConfig(text, json, num_layers);
  if (!config.ok()) {
    FUZZ_CHECK(config.status().code() == absl::StatusCode::kInvalidArgument, config.status().ToString());
    v1::ClusterConfig raw;
    return fuzz::ParseRaw(text, json, &raw) ? 0 : -1;  // a syntax error: nothing deeper to reach
  }
  fuzz::CheckConfig(*config, num_layers);
  return 0;
}

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size, unsigned int seed) {
  using namespace verdict;  // NOLINT
  fuzz::ProtoMutator m(seed);
  if (size < 1 || m.OneIn(4)) return LLVMFuzzerMutate(data, size, max_size);
  uint8_t mode = data[0];
  if (m.OneIn(10)) mode = static_cast<uint8_t>(m.Below(64));
  const bool json = (data[0] & 1) != 0;
  v1::ClusterConfig c;
  if (!fuzz::ParseRaw(std::string(reinterpret_cast<const char*>(data + 1), size - 1), json, &c)) {
    return LLVMFuzzerMutate(data, size, max_size);
  }
  m.Mutate(&c);
  const std::string text = fuzz::Print(c, (mode & 1) != 0);
  if (text.empty()) return LLVMFuzzerMutate(data, size, max_size);
  return fuzz::Emit(std::string(1, static_cast<char>(mode)) + text, data, max_size);
}

std::vector<std::string> VerdictFuzzSeeds() {
  using namespace verdict;  // NOLINT
  v1::ClusterConfig c;
  c.set_name("fuzz");
  c.mutable_target()->set_path("assets/models/arith-target");
  c.mutable_coordinator()->set_listen("127.0.0.1:50051");
  c.mutable_coordinator()->add_allowed_policies(v1::VERIFICATION_POLICY_JUDGE);
  c.mutable_draft()->set_listen("127.0.0.1:50061");
  c.mutable_draft()->mutable_model()->set_path("assets/models/arith-draft");
  for (int i = 0; i < 2; ++i) {
    v1::TargetShardConfig* s = c.add_shards();
    s->set_listen("127.0.0.1:5007" + std::to_string(i));
    s->set_data_listen("127.0.0.1:5008" + std::to_string(i));
    s->set_layer_begin(2 * i);
    s->set_layer_end(2 * i + 2);
  }
  c.mutable_shards(1)->set_judge_head("judge-head.safetensors");
  c.mutable_shards(1)->set_judge_threshold(0.25f);
  c.mutable_shards(1)->set_tensor_parallel(2);
  c.mutable_shards(1)->add_devices("cpu");
  c.mutable_shards(1)->add_devices("cpu");
  c.mutable_transport()->set_kind(v1::TransportConfig::KIND_GRPC);
  std::vector<std::string> seeds;
  for (bool json : {false, true}) {
    for (int layers : {0, 4}) {
      seeds.push_back(std::string(1, static_cast<char>((json ? 1 : 0) | layers << 2)) + fuzz::Print(c, json));
    }
  }
  return seeds;
}
