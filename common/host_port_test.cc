// SPDX-License-Identifier: Apache-2.0
#include "common/host_port.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace verdict {
namespace {

using ::testing::HasSubstr;

TEST(HostPortTest, ParsesNamesIpv4AndBracketedIpv6) {
  absl::StatusOr<HostPort> a = ParseHostPort("verdict-shard-0.verdict-shards.default.svc.cluster.local:50071");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->host, "verdict-shard-0.verdict-shards.default.svc.cluster.local");
  EXPECT_EQ(a->port, 50071);
  a = ParseHostPort("10.0.0.2:1");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "10.0.0.2");
  a = ParseHostPort("[::]:65535");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "::");
  EXPECT_EQ(a->port, 65535);
  a = ParseHostPort("[fe80::1%eth0]:8080");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "fe80::1%eth0");
}

TEST(HostPortTest, PortZeroOnlyWhenAllowed) {
  EXPECT_FALSE(ParseHostPort("127.0.0.1:0").ok());
  EXPECT_TRUE(ParseHostPort("127.0.0.1:0", /*allow_port_zero=*/true).ok());
}

TEST(HostPortTest, RefusesMalformedAddressesSayingWhy) {
  const struct {
    const char* address;
    const char* why;
  } cases[] = {
      {"localhost", "no port"},
      {":50051", "no host"},
      {"host:", "port outside"},
      {"host:65536", "port outside"},
      {"host:-1", "port outside"},
      {"host:12a", "port outside"},
      {"host:+80", "port outside"},
      {"host: 80", "port outside"},
      {"::1:50051", "without brackets"},
      {"[::1:50051", "unbalanced"},
      {"[]:50051", "unbalanced"},
      {"http://host:80", "URL scheme"},
      {"ho st:80", "characters"},
      {"host/x:80", "characters"},
  };
  for (const auto& c : cases) {
    absl::StatusOr<HostPort> p = ParseHostPort(c.address);
    ASSERT_FALSE(p.ok()) << c.address;
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(p.status().message(), HasSubstr(c.why)) << c.address;
    EXPECT_THAT(p.status().message(), HasSubstr(c.address));
  }
}

TEST(HostPortTest, JoinBracketsIpv6AndRoundTrips) {
  EXPECT_EQ(JoinHostPort("::", 80), "[::]:80");
  EXPECT_EQ(JoinHostPort("node-1", 80), "node-1:80");
  for (const char* a : {"[::1]:9", "a.b:1", "0.0.0.0:50051"}) {
    absl::StatusOr<HostPort> p = ParseHostPort(a);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(JoinHostPort(p->host, p->port), a);
  }
}

TEST(HostPortTest, HostsOnTheirOwn) {
  for (const char* ok : {"node-1", "10.0.0.2", "::", "fe80::1%eth0", "a.b_c"}) EXPECT_TRUE(ValidateHost(ok).ok()) << ok;
  for (const char* bad : {"", "a b", "x/y", "http://x", "[::]x"}) EXPECT_FALSE(ValidateHost(bad).ok()) << bad;
}

TEST(HostPortTest, Wildcards) {
  EXPECT_TRUE(IsWildcardHost("0.0.0.0"));
  EXPECT_TRUE(IsWildcardHost("::"));
  EXPECT_FALSE(IsWildcardHost("127.0.0.1"));
}

}  // namespace
}  // namespace verdict
