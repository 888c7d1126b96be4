// SPDX-License-Identifier: Apache-2.0
// The activation codec: f32 and bf16 round trips, and every check a receiving shard makes on a
// payload it must not trust (length, CRC, hidden size, dtype, rows against the blocks, block fields).
#include "services/shard/activation_codec.h"

#include <cmath>
#include <random>

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace verdict::services {
namespace {

using ::testing::HasSubstr;
using ::verdict::testing::StatusIs;

workers::ShardBatch MakeBatch(int64_t hidden) {
  workers::ShardBatch batch;
  spec::ShardBlock a;
  a.session_id = spec::SessionId(7);
  a.step = 3;
  a.start_position = 10;
  a.num_tokens = 3;
  a.verify = true;
  a.draft.tokens = {4, 5};
  a.draft.logprobs = {-0.5f, -1.5f};
  spec::ShardBlock b;
  b.session_id = spec::SessionId(9);
  b.step = 1;
  b.num_tokens = 2;
  batch.blocks = {a, b};
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  batch.activations.resize(5 * hidden);
  for (float& v : batch.activations) v = normal(rng);
  return batch;
}

TEST(ActivationCodecTest, RoundTripsF32ExactlyAndBf16Closely) {
  const workers::ShardBatch batch = MakeBatch(16);
  EncodedActivations f32 = EncodeActivations(batch, 0, 16, v1::ACTIVATION_DTYPE_F32);
  EXPECT_EQ(f32.payload.size(), 5u * 16 * 4);
  absl::StatusOr<workers::ShardBatch> back = DecodeActivations(f32.header, f32.payload, 16, 64);
  ASSERT_OK(back.status());
  EXPECT_EQ(back->activations, batch.activations);
  ASSERT_EQ(back->blocks.size(), 2u);
  EXPECT_EQ(back->blocks[0].session_id, spec::SessionId(7));
  EXPECT_EQ(back->blocks[0].start_position, 10);
  EXPECT_EQ(back->blocks[0].draft.tokens, batch.blocks[0].draft.tokens);
  EXPECT_TRUE(back->blocks[0].verify);

  EncodedActivations bf16 = EncodeActivations(batch, 0, 16, v1::ACTIVATION_DTYPE_BF16);
  EXPECT_EQ(bf16.payload.size(), 5u * 16 * 2);
  back = DecodeActivations(bf16.header, bf16.payload, 16, 64);
  ASSERT_OK(back.status());
  for (size_t i = 0; i < batch.activations.size(); ++i) {
    EXPECT_NEAR(back->activations[i], batch.activations[i], std::abs(batch.activations[i]) * 1e-2f + 1e-6f);
  }
}

TEST(ActivationCodecTest, RefusesWhatDoesNotAddUp) {
  const workers::ShardBatch batch = MakeBatch(8);
  EncodedActivations e = EncodeActivations(batch, 0, 8, v1::ACTIVATION_DTYPE_F32);

  std::string flipped = e.payload;
  flipped[5] ^= 0x40;
  EXPECT_THAT(DecodeActivations(e.header, flipped, 8, 64).status(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("CRC")));
  EXPECT_THAT(DecodeActivations(e.header, e.payload.substr(1), 8, 64).status(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("bytes")));
  EXPECT_THAT(DecodeActivations(e.header, e.payload, 16, 64).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("hidden size")));

  v1::ActivationBatch bad_dtype = e.header;
  bad_dtype.set_dtype(static_cast<v1::ActivationDType>(9));
  EXPECT_THAT(DecodeActivations(bad_dtype, e.payload, 8, 64).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dtype")));

  // The header's length and CRC match, but the blocks claim more rows than the bytes hold.
  v1::ActivationBatch more_rows = e.header;
  more_rows.mutable_blocks(1)->set_num_tokens(3);
  EXPECT_THAT(DecodeActivations(more_rows, e.payload, 8, 64).status(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("rows")));

  v1::ActivationBatch bad_block = e.header;
  bad_block.mutable_blocks(0)->set_num_tokens(0);
  EXPECT_THAT(DecodeActivations(bad_block, e.payload, 8, 64).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  v1::ActivationBatch bad_token = e.header;
  bad_token.mutable_blocks(0)->mutable_draft()->set_tokens(0, 64);
  EXPECT_THAT(DecodeActivations(bad_token, e.payload, 8, 64).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("vocabulary")));
  v1::ActivationBatch bad_logprobs = e.header;
  bad_logprobs.mutable_blocks(0)->mutable_draft()->add_logprobs(0.0f);
  EXPECT_THAT(DecodeActivations(bad_logprobs, e.payload, 8, 64).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("log-probabilities")));
}

// Rows whose byte count wraps around 2^64 onto the payload's length do not pass: 2^32 rows of 2^30
// f32 values are 2^64 bytes, "equal" to an empty payload when multiplied in 64 bits, and the
// decoder then sized its activations from the product (2^62 floats: std::length_error, an
// exception that ended the shard). Found by review while fuzzing (tests/fuzz); a real shard's
// hidden size needs about 2^19 blocks for the same wrap, a 6 MB message.
TEST(ActivationCodecTest, RefusesRowsWhoseByteCountWraps) {
  constexpr int64_t kHugeHidden = int64_t{1} << 30;
  v1::ActivationBatch header;
  header.set_hidden_size(static_cast<int32_t>(kHugeHidden));
  header.set_dtype(v1::ACTIVATION_DTYPE_F32);
  for (int32_t rows : {INT32_MAX, INT32_MAX, 2}) {  // 2^32 rows in all
    v1::BlockHeader* b = header.add_blocks();
    b->set_session_id(1);
    b->set_step(1);
    b->set_num_tokens(rows);
  }
  header.set_data_bytes(0);
  header.set_crc32(Crc32(""));
  EXPECT_THAT(DecodeActivations(header, "", kHugeHidden, 64).status(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("4294967296 rows")));
}

// A batch of no blocks (no rows, no bytes) decodes to nothing, without copying from the empty
// payload's null pointer (memcpy(nullptr, nullptr, 0): UBSan in the target_shard and
// activation_frame fuzz targets of tests/fuzz).
TEST(ActivationCodecTest, DecodesABatchOfNoRows) {
  for (v1::ActivationDType dtype : {v1::ACTIVATION_DTYPE_F32, v1::ACTIVATION_DTYPE_BF16}) {
    const EncodedActivations e = EncodeActivations(workers::ShardBatch{}, 0, 8, dtype);
    EXPECT_TRUE(e.payload.empty());
    ASSERT_OK_AND_ASSIGN(workers::ShardBatch back, DecodeActivations(e.header, e.payload, 8, 64));
    EXPECT_TRUE(back.blocks.empty());
    EXPECT_TRUE(back.activations.empty());
  }
}

}  // namespace
}  // namespace verdict::services
