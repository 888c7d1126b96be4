// SPDX-License-Identifier: Apache-2.0
// Activations between target shards on the wire: a verdict.v1.ActivationBatch header (the blocks,
// hidden size, dtype, byte length and CRC-32 of the data) and the raw row-major activation bytes
// (f32, or bf16 to halve the traffic). The same encoding travels over UCX (header and bytes as one
// transport frame) and over the gRPC fallback (the bytes in the message's `data`).
#ifndef VERDICT_SERVICES_SHARD_ACTIVATION_CODEC_H_
#define VERDICT_SERVICES_SHARD_ACTIVATION_CODEC_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "verdict/v1/target_shard.pb.h"
#include "workers/target_shard.h"

namespace verdict::services {

struct EncodedActivations {
  v1::ActivationBatch header;  // without data
  std::string payload;
};

EncodedActivations EncodeActivations(const workers::ShardBatch& batch, int from_shard, int64_t hidden_size,
                                     v1::ActivationDType dtype);

// Checks everything a receiver must not trust: the hidden size, the dtype, the byte length against
// the header and against the blocks' rows, the CRC, and each block (FromProto). kDataLoss for a
// payload that does not match its header (length, checksum), kInvalidArgument otherwise.
absl::StatusOr<workers::ShardBatch> DecodeActivations(const v1::ActivationBatch& header, absl::string_view payload,
                                                      int64_t hidden_size, int64_t vocab_size);

// Shard 0's Forward request as a batch of one block (the header checked by FromProto against
// `vocab_size`; the ids against the vocabulary by the shard itself). kInvalidArgument for a bad
// header or a number of ids other than the block's positions.
absl::StatusOr<workers::ShardBatch> DecodeForward(const v1::ForwardRequest& request, int64_t vocab_size);

uint32_t Crc32(absl::string_view bytes);

}  // namespace verdict::services

#endif  // VERDICT_SERVICES_SHARD_ACTIVATION_CODEC_H_
