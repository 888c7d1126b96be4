// SPDX-License-Identifier: Apache-2.0
// Cluster configs: textproto and JSON forms parse to the same message with defaults filled, and
// every config that cannot work is refused with a message naming the problem.
#include "services/config/cluster_config.h"

#include "common/testing/status_matchers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace verdict::services {
namespace {

using ::testing::HasSubstr;
using ::verdict::testing::StatusIs;

constexpr char kText[] = R"pb(
  name: "t"
  target { path: "/models/target" }
  coordinator { listen: "127.0.0.1:1" allowed_policies: [VERIFICATION_POLICY_JUDGE] }
  draft { listen: "127.0.0.1:2" model { path: "/models/draft" } }
  shards { listen: "127.0.0.1:3" layer_begin: 0 layer_end: 2 }
  shards { listen: "127.0.0.1:4" data_listen: "127.0.0.1:5" layer_begin: 2 layer_end: 4 judge_head: "h" }
)pb";

constexpr char kJson[] = R"({
  "name": "t",
  "target": {"path": "/models/target"},
  "coordinator": {"listen": "127.0.0.1:1", "allowedPolicies": ["VERIFICATION_POLICY_JUDGE"]},
  "draft": {"listen": "127.0.0.1:2", "model": {"path": "/models/draft"}},
  "shards": [
    {"listen": "127.0.0.1:3", "layerBegin": 0, "layerEnd": 2},
    {"listen": "127.0.0.1:4", "dataListen": "127.0.0.1:5", "layerBegin": 2, "layerEnd": 4, "judgeHead": "h"}
  ]
})";

TEST(ClusterConfigTest, TextprotoAndJsonAgreeAndDefaultsAreFilled) {
  absl::StatusOr<v1::ClusterConfig> text = ParseClusterConfig(kText, /*json=*/false, /*num_layers=*/4);
  ASSERT_OK(text.status());
  absl::StatusOr<v1::ClusterConfig> json = ParseClusterConfig(kJson, /*json=*/true, 4);
  ASSERT_OK(json.status());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*text, *json));
  EXPECT_EQ(text->coordinator().default_draft_window(), 8);
  EXPECT_EQ(text->coordinator().max_sessions(), 64);
  EXPECT_TRUE(text->coordinator().pipelined());
  EXPECT_EQ(text->transport().kind(), v1::TransportConfig::KIND_UCX);
  EXPECT_EQ(text->shards(1).max_batch_tokens(), 1024);
}

TEST(ClusterConfigTest, RefusesConfigsThatCannotWork) {
  auto parse = [](const std::string& text, int64_t layers = 4) { return ParseClusterConfig(text, false, layers).status(); };
  EXPECT_THAT(parse("name: "), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line")));
  EXPECT_THAT(parse("bogus_field: 1"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bogus_field")));
  EXPECT_THAT(ParseClusterConfig("{\"nope\": 1}", true, 0).status(), StatusIs(absl::StatusCode::kInvalidArgument));
  const std::string base = R"pb(target { path: "m" } coordinator { listen: "a:1" } )pb";
  EXPECT_THAT(parse(base), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no target shards")));
  EXPECT_THAT(parse(base + R"pb(shards { listen: "a:2" layer_begin: 0 layer_end: 2 }
                                shards { listen: "a:3" data_listen: "a:4" layer_begin: 3 layer_end: 4 })pb"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("must start at 2")));
  EXPECT_THAT(parse(base + R"pb(shards { listen: "a:2" layer_begin: 0 layer_end: 3 })pb"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("the target has 4")));
  EXPECT_THAT(parse(base + R"pb(shards { listen: "a:1" layer_begin: 0 layer_end: 4 })pb"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("used twice")));
  EXPECT_THAT(parse(base + R"pb(shards { listen: "a:2" layer_begin: 0 layer_end: 2 judge_head: "h" }
                                shards { listen: "a:3" data_listen: "a:4" layer_begin: 2 layer_end: 4 })pb"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("only the last shard")));
  EXPECT_THAT(parse(base + R"pb(shards { listen: "a:2" layer_begin: 0 layer_end: 2 }
                                shards { listen: "a:3" layer_begin: 2 layer_end: 4 })pb"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("data_listen is empty")));
  EXPECT_THAT(parse(base + R"pb(shards { listen: "a:2" layer_begin: 0 layer_end: 4 tensor_parallel: -1 })pb"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tensor_parallel is -1")));
  EXPECT_THAT(parse(base + R"pb(shards { listen: "a:2" layer_begin: 0 layer_end: 4 kv_cache: "fp8" })pb"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("shards[0].kv_cache is 'fp8'")));
  EXPECT_OK(parse(base + R"pb(shards { listen: "a:2" layer_begin: 0 layer_end: 4 kv_cache: "f16" })pb"));
  EXPECT_THAT(parse(base + R"pb(shards { listen: "a:2" layer_begin: 0 layer_end: 4 tensor_parallel: 2
                                         devices: "cuda:0" })pb"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("1 devices for tensor_parallel 2")));
  EXPECT_THAT(parse(base + R"pb(shards { listen: "a:2" layer_begin: 0 layer_end: 4 devices: "cuda:0" })pb"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("1 devices for tensor_parallel 0")));
  EXPECT_THAT(parse(R"pb(coordinator { listen: "a:1" } shards { listen: "a:2" layer_begin: 0 layer_end: 4 })pb"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("target.path")));
  EXPECT_THAT(LoadClusterConfig("/nonexistent/cluster.textproto").status(), StatusIs(absl::StatusCode::kNotFound));
}

TEST(ClusterConfigTest, AddressesAreWellFormedDialableAndDistinct) {
  auto parse = [](const std::string& text) { return ParseClusterConfig(text, false, 4).status(); };
  const std::string target = R"pb(target { path: "m" } )pb";
  const std::string one_shard = R"pb(shards { listen: "s:2" admin_listen: "s:3" layer_begin: 0 layer_end: 4 })pb";
  EXPECT_THAT(parse(target + R"pb(coordinator { listen: "c" } )pb" + one_shard),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("coordinator.listen: address \"c\" has no port")));
  EXPECT_THAT(parse(target + R"pb(coordinator { listen: "c:1" admin_listen: "http://c:80" } )pb" + one_shard),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("coordinator.admin_listen")));
  // Peers dial a shard's listen and admin addresses: a wildcard there cannot work.
  EXPECT_THAT(parse(target + R"pb(coordinator { listen: "c:1" } shards { listen: "0.0.0.0:2" layer_begin: 0 layer_end: 4 })pb"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("shards[0].listen is 0.0.0.0:2, which peers cannot dial")));
  EXPECT_THAT(parse(target + R"pb(coordinator { listen: "c:1" } draft { listen: "[::]:5" model { path: "d" } } )pb" + one_shard),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("draft.listen is [::]:5")));
  // ... and binding one is what the bind fields are for.
  EXPECT_OK(parse(target + R"pb(coordinator { listen: "c:1" bind: "0.0.0.0:1" admin_listen: "c:9" admin_bind: "[::]:9" }
                                shards { listen: "s:2" bind: "0.0.0.0:2" layer_begin: 0 layer_end: 4 })pb"));
  EXPECT_THAT(parse(target + R"pb(coordinator { listen: "c:1" } shards { listen: "s:2" bind: "0.0.0.0" layer_begin: 0 layer_end: 4 })pb"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("shards[0].bind")));
  // Every advertised address once, admin and HTTP ones included.
  EXPECT_THAT(parse(target + R"pb(coordinator { listen: "c:1" admin_listen: "s:3" } )pb" + one_shard),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("shards[0].admin_listen s:3 is used twice")));
  EXPECT_THAT(parse(target + R"pb(coordinator { listen: "c:1" http_listen: "c:1" } )pb" + one_shard),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("coordinator.http_listen c:1 is used twice")));
}

TEST(ClusterConfigTest, LayerErrorsSayWhetherRangesOverlapOrLeaveAGap) {
  auto parse = [](const std::string& shards) {
    return ParseClusterConfig(absl::StrCat(R"pb(target { path: "m" } coordinator { listen: "c:1" } )pb", shards), false, 4)
        .status();
  };
  EXPECT_THAT(parse(R"pb(shards { listen: "a:2" layer_begin: 0 layer_end: 2 }
                         shards { listen: "a:3" data_listen: "a:4" layer_begin: 1 layer_end: 4 })pb"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("overlaps the layers before it, which end at 2")));
  EXPECT_THAT(parse(R"pb(shards { listen: "a:2" layer_begin: 0 layer_end: 2 }
                         shards { listen: "a:3" data_listen: "a:4" layer_begin: 3 layer_end: 4 })pb"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("leaves layers [2, 3) to no shard")));
  EXPECT_THAT(parse(R"pb(shards { listen: "a:2" layer_begin: 0 layer_end: 6 })pb"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("go past the model's end")));
}

TEST(ClusterConfigTest, AllowListIsSane) {
  auto parse = [](const std::string& coordinator) {
    return ParseClusterConfig(absl::StrCat(R"pb(target { path: "m" } shards { listen: "a:2" layer_begin: 0 layer_end: 4 })pb",
                                           " coordinator { listen: \"c:1\" ", coordinator, " }"),
                              false, 4)
        .status();
  };
  EXPECT_OK(parse("default_policy: VERIFICATION_POLICY_JUDGE allowed_policies: [VERIFICATION_POLICY_JUDGE]"));
  EXPECT_OK(parse("default_policy: VERIFICATION_POLICY_EXACT"));
  EXPECT_THAT(parse("default_policy: VERIFICATION_POLICY_JUDGE"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not in coordinator.allowed_policies")));
  EXPECT_THAT(parse("allowed_policies: [VERIFICATION_POLICY_JUDGE, VERIFICATION_POLICY_JUDGE]"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("VERIFICATION_POLICY_JUDGE twice")));
  EXPECT_THAT(parse("allowed_policies: [VERIFICATION_POLICY_UNSPECIFIED]"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a policy")));
  EXPECT_THAT(parse("allowed_policies: [42]"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ClusterConfigTest, SecuritySection) {
  auto parse = [](const std::string& security, const std::string& transport = "KIND_GRPC") {
    return ParseClusterConfig(absl::StrCat(kText, " transport { kind: ", transport, " } security { ", security, " }"),
                              false, 4)
        .status();
  };
  const std::string member = R"pb(member_tls { ca_file: "ca.pem" cert_file: "{role}.pem" key_file: "{role}.key" })pb";
  EXPECT_TRUE(parse(member).ok());
  EXPECT_TRUE(parse(R"pb(client_tls { cert_file: "s.pem" key_file: "s.key" client_ca_file: "c.pem" }
                         api_keys_file: "keys" admin_tokens_file: "tokens" reload_seconds: 2)pb")
                  .ok());
  // Activations over UCX have no encryption: refused under member TLS unless the fabric is trusted.
  EXPECT_THAT(parse(member, "KIND_UCX"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("KIND_GRPC")));
  EXPECT_TRUE(parse(R"pb(member_tls { ca_file: "ca.pem" cert_file: "c.pem" key_file: "c.key" allow_plaintext_ucx: true })pb",
                    "KIND_UCX")
                  .ok());
  EXPECT_THAT(parse(R"pb(member_tls { cert_file: "c.pem" key_file: "c.key" })pb"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ca_file")));
  EXPECT_THAT(parse(R"pb(member_tls { ca_file: "ca.pem" })pb"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cert_file and key_file")));
  EXPECT_THAT(parse(R"pb(client_tls { cert_file: "s.pem" })pb"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("both cert_file and key_file")));
  EXPECT_THAT(parse(R"pb(client_tls { client_ca_file: "c.pem" })pb"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("without a server certificate")));
  EXPECT_THAT(parse("reload_seconds: -1"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("reload_seconds")));
}

TEST(ClusterConfigTest, TensorParallelShards) {
  const std::string base = R"pb(target { path: "m" } coordinator { listen: "a:1" } )pb";
  absl::StatusOr<v1::ClusterConfig> c = ParseClusterConfig(
      base + R"pb(shards { listen: "a:2" layer_begin: 0 layer_end: 2 tensor_parallel: 2
                           devices: "cuda:0" devices: "cuda:1" }
                  shards { listen: "a:3" data_listen: "a:4" layer_begin: 2 layer_end: 4 tensor_parallel: 4
                           device: "cpu" })pb",
      /*json=*/false, 4);
  ASSERT_OK(c.status());
  EXPECT_EQ(c->shards(0).tensor_parallel(), 2);
  EXPECT_THAT(c->shards(0).devices(), ::testing::ElementsAre("cuda:0", "cuda:1"));
  EXPECT_EQ(c->shards(1).tensor_parallel(), 4);
  EXPECT_TRUE(c->shards(1).devices().empty());
}

TEST(ClusterConfigTest, TheShippedLocalClusterConfigIsValid) {
  absl::StatusOr<v1::ClusterConfig> c = LoadClusterConfig(std::string(VERDICT_SOURCE_DIR) + "/deploy/local/cluster.textproto", 4);
  ASSERT_OK(c.status());
  EXPECT_EQ(c->shards_size(), 2);
  EXPECT_FALSE(c->shards(1).judge_head().empty());
}

}  // namespace
}  // namespace verdict::services
