// SPDX-License-Identifier: Apache-2.0
#include "services/coordinator/client_auth.h"

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace verdict::services {
namespace {

using ::testing::HasSubstr;
using ::verdict::testing::IsOk;
using ::verdict::testing::StatusIs;

security::ApiKey Key(const std::string& name, const std::string& key) {
  security::ApiKey k;
  k.name = name;
  k.hash = security::HashKey(key);
  return k;
}

TEST(ClientAuthTest, WithoutKeysEveryCallerIsAnonymousAndAdmitted) {
  ClientAuth auth(nullptr);
  EXPECT_FALSE(auth.required());
  absl::StatusOr<std::shared_ptr<const security::ApiKey>> who = auth.Authenticate("");
  ASSERT_THAT(who, IsOk());
  EXPECT_EQ(*who, nullptr);
  EXPECT_THAT(auth.Admit(*who, spec::Policy::kJudge), IsOk());
}

TEST(ClientAuthTest, KeysPoliciesAndSessionLimits) {
  security::ApiKey limited = Key("limited", "key-limited-0123456789");
  limited.max_sessions = 2;
  limited.allowed_policies = std::vector<spec::Policy>{spec::Policy::kJudge};
  security::KeyRing ring("API keys", {limited, Key("open", "key-open-0123456789")});
  ClientAuth auth(&ring);
  EXPECT_THAT(auth.Authenticate(""), StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(auth.Authenticate("Bearer nope"), StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(auth.Authenticate("key-limited-0123456789"), StatusIs(absl::StatusCode::kUnauthenticated))
      << "the scheme is required";
  EXPECT_EQ(auth.unauthenticated(), 3);

  absl::StatusOr<std::shared_ptr<const security::ApiKey>> key = auth.Authenticate("Bearer key-limited-0123456789");
  ASSERT_THAT(key, IsOk());
  EXPECT_THAT(auth.Admit(*key, spec::Policy::kLossyProb),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("\"limited\"")));
  absl::StatusOr<std::shared_ptr<void>> a = auth.Admit(*key, spec::Policy::kJudge);
  absl::StatusOr<std::shared_ptr<void>> b = auth.Admit(*key, spec::Policy::kExact);  // exact is always allowed
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_THAT(auth.Admit(*key, spec::Policy::kJudge),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("limit of 2 sessions")));
  a->reset();  // a session ends: its slot is free again
  absl::StatusOr<std::shared_ptr<void>> c = auth.Admit(*key, spec::Policy::kJudge);
  EXPECT_THAT(c, IsOk());

  std::vector<ClientAuth::KeyCounts> counts = auth.Snapshot();
  ASSERT_EQ(counts.size(), 1u);
  EXPECT_EQ(counts[0].name, "limited");
  EXPECT_EQ(counts[0].requests, 3);
  EXPECT_EQ(counts[0].denied, 2);
  EXPECT_EQ(counts[0].sessions, 2);
  b->reset();
  c->reset();
  EXPECT_EQ(auth.Snapshot()[0].sessions, 0);
}

}  // namespace
}  // namespace verdict::services
