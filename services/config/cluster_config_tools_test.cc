// SPDX-License-Identifier: Apache-2.0
// Where members bind versus where they are dialed, shard indexes from the command line, and what
// `verdict config render` / `check --files` produce.
#include "services/config/cluster_config_tools.h"

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/config/cluster_config.h"
#include "services/config/member_addresses.h"

namespace verdict::services {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::verdict::testing::StatusIs;

v1::ClusterConfig Parse(const std::string& text) {
  absl::StatusOr<v1::ClusterConfig> c = ParseClusterConfig(text, /*json=*/false);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : v1::ClusterConfig();
}

constexpr char kPodConfig[] = R"pb(
  target { path: "/models/target" }
  coordinator { listen: "verdict-coordinator:50051" admin_listen: "verdict-coordinator:8080"
                http_listen: "verdict-coordinator:8000" bind: "0.0.0.0:50051" }
  draft { listen: "verdict-draft:50061" admin_listen: "verdict-draft:8081" model { path: "/models/draft" } }
  shards { listen: "verdict-shard-0.verdict-shard:50071" admin_listen: "verdict-shard-0.verdict-shard:8082"
           layer_begin: 0 layer_end: 2 }
  shards { listen: "verdict-shard-1.verdict-shard:50071" admin_listen: "verdict-shard-1.verdict-shard:8082"
           data_listen: "verdict-shard-1.verdict-shard:50171" data_bind: "10.0.0.7:50171" layer_begin: 2 layer_end: 4 }
)pb";

TEST(MemberAddressesTest, ConfigBindFieldsThenBindHostThenExplicitFlags) {
  const v1::ClusterConfig c = Parse(kPodConfig);
  absl::StatusOr<BindAddresses> b = CoordinatorBindAddresses(c.coordinator(), {});
  ASSERT_OK(b.status());
  EXPECT_EQ(b->grpc, "0.0.0.0:50051");               // the config's bind
  EXPECT_EQ(b->admin, "verdict-coordinator:8080");   // no bind: the listen address
  EXPECT_EQ(b->http, "verdict-coordinator:8000");
  EXPECT_TRUE(b->data.empty());
  // --bind-host moves every endpoint, keeping the ports; an explicit flag wins over it.
  b = CoordinatorBindAddresses(c.coordinator(), {.admin = "127.0.0.1:9999", .host = "::"});
  ASSERT_OK(b.status());
  EXPECT_EQ(b->grpc, "[::]:50051");
  EXPECT_EQ(b->admin, "127.0.0.1:9999");
  EXPECT_EQ(b->http, "[::]:8000");

  b = ShardBindAddresses(c, 1, {.host = "0.0.0.0"});
  ASSERT_OK(b.status());
  EXPECT_EQ(b->grpc, "0.0.0.0:50071");
  EXPECT_EQ(b->admin, "0.0.0.0:8082");
  EXPECT_EQ(b->data, "0.0.0.0:50171");  // the port of data_bind
  b = ShardBindAddresses(c, 1, {});
  ASSERT_OK(b.status());
  EXPECT_EQ(b->data, "10.0.0.7:50171");
  b = ShardBindAddresses(c, 0, {});
  ASSERT_OK(b.status());
  EXPECT_TRUE(b->data.empty());  // the first shard receives no activations

  b = DraftBindAddresses(c.draft(), {.grpc = "127.0.0.2:7000"});
  ASSERT_OK(b.status());
  EXPECT_EQ(b->grpc, "127.0.0.2:7000");
  EXPECT_EQ(b->admin, "verdict-draft:8081");
}

TEST(MemberAddressesTest, BadOverridesAreClearErrors) {
  v1::ClusterConfig c = Parse(kPodConfig);
  EXPECT_THAT(ShardBindAddresses(c, 0, {.data = "0.0.0.0:1"}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("it is the first shard")));
  EXPECT_THAT(ShardBindAddresses(c, 1, {.http = "0.0.0.0:1"}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("only the coordinator")));
  EXPECT_THAT(ShardBindAddresses(c, 1, {.grpc = "0.0.0.0"}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no port")));
  EXPECT_THAT(ShardBindAddresses(c, 1, {.host = "not a host"}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--bind-host")));
  c.mutable_draft()->clear_admin_listen();
  EXPECT_THAT(DraftBindAddresses(c.draft(), {.admin = "0.0.0.0:8081"}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no draft.admin_listen")));
}

TEST(MemberAddressesTest, ShardIndexMustBeGivenNeverDefaultsToZero) {
  EXPECT_EQ(*ParseShardIndex("1", 2), 1);
  EXPECT_EQ(*ParseShardIndex(" 0\n", 2), 0);
  EXPECT_THAT(ParseShardIndex("", 2).status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is empty")));
  EXPECT_THAT(ParseShardIndex("  ", 2).status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is empty")));
  for (const char* bad : {"-1", "x", "1.0", "0x1", "$SLURM_PROCID", "9999999"}) {
    EXPECT_THAT(ParseShardIndex(bad, 2).status(), StatusIs(absl::StatusCode::kInvalidArgument)) << bad;
  }
  EXPECT_THAT(ParseShardIndex("2", 2).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("the config has 2 shards")));
}

TEST(LayerSplitTest, EvenSplitGivesTheRemainderToTheFirstShards) {
  absl::StatusOr<LayerSplit> s = EvenLayerSplit(10, 3);
  ASSERT_OK(s.status());
  EXPECT_THAT(*s, ElementsAre(Pair(0, 4), Pair(4, 7), Pair(7, 10)));
  EXPECT_THAT(EvenLayerSplit(2, 3).status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at most one shard per layer")));
  EXPECT_THAT(EvenLayerSplit(4, 0).status(), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(LayerSplitTest, ParsesRangesAndSizes) {
  EXPECT_THAT(*ParseLayerSplit("0:10,10:22, 22:32"), ElementsAre(Pair(0, 10), Pair(10, 22), Pair(22, 32)));
  EXPECT_THAT(*ParseLayerSplit("10,12,10"), ElementsAre(Pair(0, 10), Pair(10, 22), Pair(22, 32)));
  EXPECT_THAT(ParseLayerSplit("0:10,11:20").status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("must start at 10")));
  EXPECT_THAT(ParseLayerSplit("0:10,10:10").status(), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseLayerSplit("a:b").status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"a:b\"")));
  EXPECT_THAT(ParseLayerSplit("").status(), StatusIs(absl::StatusCode::kInvalidArgument));
}

constexpr char kTemplate[] = R"pb(
  name: "tmpl"
  target { path: "assets/models/arith-target" }
  coordinator { listen: "HOST:1" allowed_policies: [VERIFICATION_POLICY_JUDGE] default_draft_window: 16 }
  draft { listen: "HOST:2" model { path: "assets/models/arith-draft" } threads: 1 }
  shards { listen: "HOST:3" layer_begin: 0 layer_end: 2 threads: 1 }
  shards { listen: "HOST:4" data_listen: "HOST:5" layer_begin: 2 layer_end: 4 threads: 1
           judge_head: "assets/models/arith-judge/judge-head.safetensors" judge_threshold: 0.25 }
  transport { kind: KIND_UCX ucx_tls: "tcp" }
)pb";

TEST(RenderTest, FromTemplateAndAllocationHosts) {
  absl::StatusOr<v1::ClusterConfig> templ = ParseClusterConfigUnchecked(kTemplate, false);
  ASSERT_OK(templ.status());
  RenderRequest r;
  r.shard_hosts = {"node-1", "node-2", "node-3"};
  r.draft_host = "node-4";
  r.coordinator_host = "node-4";
  r.num_layers = 4;
  r.bind_host = "0.0.0.0";
  absl::StatusOr<v1::ClusterConfig> c = RenderClusterConfig(*templ, r);
  ASSERT_OK(c.status());
  ASSERT_EQ(c->shards_size(), 3);
  EXPECT_EQ(c->name(), "tmpl");
  EXPECT_EQ(c->coordinator().default_draft_window(), 16);  // template settings kept
  EXPECT_EQ(c->coordinator().listen(), "node-4:50051");
  EXPECT_EQ(c->coordinator().bind(), "0.0.0.0:50051");
  EXPECT_EQ(c->coordinator().http_listen(), "node-4:8000");
  EXPECT_EQ(c->draft().listen(), "node-4:50061");
  EXPECT_EQ(c->draft().admin_listen(), "node-4:8081");
  const int begins[] = {0, 2, 3}, ends[] = {2, 3, 4};
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    const v1::TargetShardConfig& s = c->shards(i);
    EXPECT_EQ(s.listen(), absl::StrCat("node-", i + 1, ":", 50071 + i));
    EXPECT_EQ(s.admin_listen(), absl::StrCat("node-", i + 1, ":", 8082 + i));
    EXPECT_EQ(s.data_listen(), i == 0 ? "" : absl::StrCat("node-", i + 1, ":", 50171 + i));
    EXPECT_EQ(s.layer_begin(), begins[i]);
    EXPECT_EQ(s.layer_end(), ends[i]);
    EXPECT_EQ(s.threads(), 1);
    EXPECT_EQ(s.judge_head().empty(), i != 2);  // the judge moves to the new last shard
  }
  EXPECT_FLOAT_EQ(c->shards(2).judge_threshold(), 0.25f);
  // The text form parses back to the same config.
  absl::StatusOr<v1::ClusterConfig> again =
      ParseClusterConfigUnchecked(ClusterConfigText(*c, "made by a test\nsecond line"), false);
  ASSERT_OK(again.status());
  EXPECT_EQ(again->SerializeAsString(), c->SerializeAsString());
}

TEST(RenderTest, IPv6HostsOneHostForAllShardsAndExplicitLayers) {
  absl::StatusOr<v1::ClusterConfig> templ = ParseClusterConfigUnchecked(kTemplate, false);
  ASSERT_OK(templ.status());
  RenderRequest r;
  r.shard_hosts = {"fd00::2"};
  r.draft_host = "fd00::3";
  r.coordinator_host = "fd00::3";
  r.layers = {{0, 1}, {1, 4}};
  absl::StatusOr<v1::ClusterConfig> c = RenderClusterConfig(*templ, r);
  ASSERT_OK(c.status());
  EXPECT_EQ(c->shards(0).listen(), "[fd00::2]:50071");
  EXPECT_EQ(c->shards(1).listen(), "[fd00::2]:50072");
  EXPECT_EQ(c->shards(1).layer_begin(), 1);
}

TEST(RenderTest, RefusesWhatCannotWork) {
  absl::StatusOr<v1::ClusterConfig> templ = ParseClusterConfigUnchecked(kTemplate, false);
  ASSERT_OK(templ.status());
  auto render = [&templ](RenderRequest r) { return RenderClusterConfig(*templ, r).status(); };
  EXPECT_THAT(render({.shard_hosts = {"a", "b", "c"}, .draft_host = "d", .coordinator_host = "d"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("give --num-layers")));
  EXPECT_THAT(render({.shard_hosts = {"a", "b"}, .coordinator_host = "d"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--draft-host is required")));
  EXPECT_THAT(render({.shard_hosts = {"a", "b"}, .draft_host = "d"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--coordinator-host is required")));
  EXPECT_THAT(render({.shard_hosts = {"a", "b"}, .draft_host = "d", .coordinator_host = "d", .num_layers = 1}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at most one shard per layer")));
  EXPECT_THAT(render({.shard_hosts = {"a b", "c"}, .draft_host = "d", .coordinator_host = "d"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--shard-hosts \"a b\"")));
  EXPECT_THAT(render({.shard_hosts = {"a", "b"}, .draft_host = "d", .coordinator_host = "d", .shards = 3, .num_layers = 4}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--shards 3 disagrees")));
  EXPECT_THAT(render({.shard_hosts = {"a", "b"}, .draft_host = "d", .coordinator_host = "d", .shard_port = 65535}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--shard-port 65535")));
  // The template's placeholders are not dialable hosts... they parse, so only the rendering decides.
  EXPECT_OK(render({.shard_hosts = {"a", "b"}, .draft_host = "d", .coordinator_host = "d"}));
}

TEST(MissingFilesTest, NamesEachMissingFileOfTheMember) {
  const std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) / "missing_files_test";
  std::filesystem::create_directories(dir / "target");
  std::ofstream(dir / "judge.safetensors") << "x";
  v1::ClusterConfig c = Parse(R"pb(
    target { path: "target" chat_template: "chat.jinja" }
    coordinator { listen: "c:1" }
    draft { listen: "d:2" model { path: "/no/such/draft" } }
    shards { listen: "a:3" layer_begin: 0 layer_end: 2 }
    shards { listen: "b:4" data_listen: "b:5" layer_begin: 2 layer_end: 4 judge_head: "judge.safetensors" }
    transport { kind: KIND_GRPC }
    security { member_tls { ca_file: "ca.pem" cert_file: "{role}.pem" key_file: "{role}.key" } }
  )pb");
  absl::StatusOr<std::vector<std::string>> shard1 = MissingFiles(c, "shard-1", dir.string());
  ASSERT_OK(shard1.status());
  EXPECT_THAT(*shard1, ElementsAre("security.member_tls.ca_file: ca.pem does not exist on this host",
                                   "security.member_tls.cert_file: shard-1.pem does not exist on this host",
                                   "security.member_tls.key_file: shard-1.key does not exist on this host"));
  c.clear_security();
  EXPECT_THAT(*MissingFiles(c, "shard-1", dir.string()), IsEmpty());
  EXPECT_THAT(*MissingFiles(c, "draft", dir.string()),
              ElementsAre("draft.model.path: /no/such/draft does not exist on this host"));
  EXPECT_THAT(*MissingFiles(c, "coordinator", dir.string()),
              ElementsAre("target.chat_template: chat.jinja does not exist on this host"));
  EXPECT_EQ(MissingFiles(c, "all", dir.string())->size(), 2u);
  EXPECT_THAT(MissingFiles(c, "shard-2", dir.string()).status(), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(MissingFiles(c, "worker", dir.string()).status(), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(WarningsTest, JudgeAllowedWithoutAHeadIsWorthSaying) {
  const v1::ClusterConfig c = Parse(R"pb(
    target { path: "m" } coordinator { listen: "c:1" allowed_policies: [VERIFICATION_POLICY_JUDGE] }
    shards { listen: "a:3" layer_begin: 0 layer_end: 2 })pb");
  const std::vector<std::string> w = ClusterConfigWarnings(c);
  ASSERT_EQ(w.size(), 2u);
  EXPECT_THAT(w[0], HasSubstr("no judge_head"));
  EXPECT_THAT(w[1], HasSubstr("no draft worker"));
}

}  // namespace
}  // namespace verdict::services
