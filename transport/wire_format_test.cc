// SPDX-License-Identifier: Apache-2.0
#include "transport/wire_format.h"

#include <optional>
#include <string>

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace verdict::transport::internal {
namespace {

using ::testing::HasSubstr;
using ::verdict::testing::StatusIs;

std::string Encode(const FramePrefix& prefix) {
  std::string out;
  AppendFramePrefix(prefix, &out);
  return out;
}

TEST(HandshakeTest, RoundTripsAndParsesIncrementally) {
  const Handshake hello{.status = kHandshakeOk, .worker_address = std::string("\x01\x02ucx-address\0bytes", 20)};
  const std::string bytes = EncodeHandshake(kHelloMagic, hello);
  ASSERT_EQ(bytes.size(), kHandshakeHeaderBytes + 20);
  EXPECT_EQ(bytes.substr(0, 8), "VRDTHELO");
  // Every proper prefix is "need more", the whole is the message.
  for (size_t n = 0; n < bytes.size(); ++n) {
    ASSERT_OK_AND_ASSIGN(std::optional<Handshake> partial, ParseHandshake(kHelloMagic, bytes.substr(0, n)));
    EXPECT_FALSE(partial.has_value()) << n;
  }
  ASSERT_OK_AND_ASSIGN(std::optional<Handshake> parsed, ParseHandshake(kHelloMagic, bytes));
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->status, kHandshakeOk);
  EXPECT_EQ(parsed->worker_address, hello.worker_address);

  const std::string welcome = EncodeHandshake(kWelcomeMagic, {.status = kHandshakeRejected, .worker_address = ""});
  ASSERT_OK_AND_ASSIGN(parsed, ParseHandshake(kWelcomeMagic, welcome));
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->status, kHandshakeRejected);
}

TEST(HandshakeTest, RefusesGarbageEarlyAndCorruptionAtTheEnd) {
  const std::string good = EncodeHandshake(kHelloMagic, {.status = 0, .worker_address = "address"});
  // Garbage fails on its first byte; a welcome is not a hello.
  EXPECT_THAT(ParseHandshake(kHelloMagic, std::string(1, '\0')), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(ParseHandshake(kHelloMagic, "GET / HTTP/1.1\r\n"), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(ParseHandshake(kHelloMagic, EncodeHandshake(kWelcomeMagic, {})), StatusIs(absl::StatusCode::kDataLoss));
  std::string bad_version = good;
  bad_version[8] = 7;
  EXPECT_THAT(ParseHandshake(kHelloMagic, bad_version.substr(0, kHandshakeHeaderBytes)),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("version")));
  std::string too_long = good.substr(0, kHandshakeHeaderBytes);
  too_long[12] = too_long[13] = too_long[14] = too_long[15] = '\xff';
  EXPECT_THAT(ParseHandshake(kHelloMagic, too_long), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("too long")));
  std::string corrupt = good;
  corrupt.back() ^= 1;
  EXPECT_THAT(ParseHandshake(kHelloMagic, corrupt), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("checksum")));
  EXPECT_THAT(ParseHandshake(kHelloMagic, good + "x"), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("after")));
}

TEST(FrameFormatTest, PrefixRoundTripsAndHasTheDocumentedLayout) {
  FramePrefix prefix;
  prefix.flags = kHeaderInData;
  prefix.sequence = 0x0102030405060708ULL;
  prefix.header_bytes = 300;
  prefix.payload_bytes = uint64_t{1} << 26;
  const std::string bytes = Encode(prefix);
  ASSERT_EQ(bytes.size(), kFramePrefixBytes);
  EXPECT_EQ(bytes.substr(0, 4), "VRDF");
  EXPECT_EQ(bytes[4], 1);  // version, little-endian
  EXPECT_EQ(bytes[8], 0x08);  // sequence, little-endian
  EXPECT_EQ(bytes[15], 0x01);
  ASSERT_OK_AND_ASSIGN(FramePrefix decoded, DecodeFramePrefix(bytes + "trailing header bytes"));
  EXPECT_EQ(decoded.flags, prefix.flags);
  EXPECT_EQ(decoded.sequence, prefix.sequence);
  EXPECT_EQ(decoded.header_bytes, prefix.header_bytes);
  EXPECT_EQ(decoded.payload_bytes, prefix.payload_bytes);
}

TEST(FrameFormatTest, RejectsShortPrefixBadMagicVersionAndFlags) {
  const std::string good = Encode(FramePrefix{});
  EXPECT_THAT(DecodeFramePrefix(good.substr(0, kFramePrefixBytes - 1)),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("too short")));
  EXPECT_THAT(DecodeFramePrefix(""), StatusIs(absl::StatusCode::kDataLoss));
  std::string bad_magic = good;
  bad_magic[0] = 'X';
  EXPECT_THAT(DecodeFramePrefix(bad_magic), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("magic")));
  std::string bad_version = good;
  bad_version[4] = 2;
  EXPECT_THAT(DecodeFramePrefix(bad_version), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("version")));
  std::string bad_flags = good;
  bad_flags[6] = 4;
  EXPECT_THAT(DecodeFramePrefix(bad_flags), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("flags")));
}

TEST(FrameFormatTest, LayoutAcceptsBothPlacementsOfTheHeader) {
  FramePrefix in_header{.flags = 0, .sequence = 0, .header_bytes = 10, .payload_bytes = 100};
  EXPECT_OK(CheckFrameLayout(in_header, kFramePrefixBytes + 10, 100, 1000));
  FramePrefix in_data{.flags = kHeaderInData, .sequence = 0, .header_bytes = 10, .payload_bytes = 100};
  EXPECT_OK(CheckFrameLayout(in_data, kFramePrefixBytes, 110, 1000));
  FramePrefix empty;
  EXPECT_OK(CheckFrameLayout(empty, kFramePrefixBytes, 0, 0));
}

TEST(FrameFormatTest, LayoutRejectsLengthsThatDoNotAddUp) {
  FramePrefix prefix{.flags = 0, .sequence = 0, .header_bytes = 10, .payload_bytes = 100};
  EXPECT_THAT(CheckFrameLayout(prefix, kFramePrefixBytes + 9, 100, 1000),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("do not add up")));
  EXPECT_THAT(CheckFrameLayout(prefix, kFramePrefixBytes + 10, 101, 1000), StatusIs(absl::StatusCode::kDataLoss));
  prefix.flags = kHeaderInData;
  EXPECT_THAT(CheckFrameLayout(prefix, kFramePrefixBytes + 10, 100, 1000), StatusIs(absl::StatusCode::kDataLoss));
}

TEST(FrameFormatTest, LayoutRejectsFramesOverTheLimitWithoutOverflow) {
  FramePrefix prefix{.flags = 0, .sequence = 0, .header_bytes = 0, .payload_bytes = 1001};
  EXPECT_THAT(CheckFrameLayout(prefix, kFramePrefixBytes, 1001, 1000),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("exceeds the limit")));
  // Two huge lengths whose sum wraps around to something small must still be refused.
  prefix.header_bytes = ~uint64_t{0};
  prefix.payload_bytes = 2;
  EXPECT_THAT(CheckFrameLayout(prefix, kFramePrefixBytes + 1, 0, 1000),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("exceeds the limit")));
}

}  // namespace
}  // namespace verdict::transport::internal
